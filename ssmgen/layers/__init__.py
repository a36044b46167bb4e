"""ssmgen.layers."""
