"""Monitoring: drift of the current customers against the served model's reference."""
