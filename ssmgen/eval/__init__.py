"""ssmgen.eval."""
