"""neckmatch.synth."""
