"""Experiments and one-off studies beside the product: importable from a checkout, never installed."""
