"""earlyia.learn."""
