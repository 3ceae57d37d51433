"""earlyia.followup."""
