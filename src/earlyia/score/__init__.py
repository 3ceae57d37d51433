"""earlyia.score."""
