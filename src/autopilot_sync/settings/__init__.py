"""Env contract: one typed settings class per service, validated at start, documented from the same source."""
