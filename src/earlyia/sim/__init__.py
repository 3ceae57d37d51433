"""earlyia.sim."""
