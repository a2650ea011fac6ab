"""Shared core of the line-inspection service: settings, domain types, preprocessing, metrics, CLI."""

__version__ = "0.1.0"
