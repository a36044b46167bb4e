"""ssmgen.viz."""
