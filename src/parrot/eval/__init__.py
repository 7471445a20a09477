"""Evaluation: perplexity and bits per byte over whole texts."""
