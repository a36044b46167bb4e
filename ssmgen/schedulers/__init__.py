"""ssmgen.schedulers."""
