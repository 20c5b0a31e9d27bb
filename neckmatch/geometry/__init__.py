"""neckmatch.geometry."""
