"""ssmgen.data."""
