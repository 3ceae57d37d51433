"""earlyia.io."""
