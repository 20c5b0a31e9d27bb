"""neckmatch.io."""
