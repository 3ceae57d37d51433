"""earlyia.report."""
