"""earlyia.features."""
