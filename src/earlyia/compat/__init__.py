"""earlyia.compat."""
