"""neckmatch.stats: the study statistics, computed from truth tables (never from the matching engine)."""
