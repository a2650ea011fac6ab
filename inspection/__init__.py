"""Shared core of the line-inspection service: settings, domain types, preprocessing, metrics, storage."""

__version__ = "0.1.0"
