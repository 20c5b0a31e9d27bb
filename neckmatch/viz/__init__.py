"""neckmatch.viz."""
