"""Diffusers pipelines for the ssmgen models, one file per model family."""
