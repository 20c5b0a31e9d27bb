"""neckmatch.correlation."""
