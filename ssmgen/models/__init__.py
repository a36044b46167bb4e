"""ssmgen.models."""
