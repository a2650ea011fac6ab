"""Dataset importers; each writes the folder format of DESIGN.md."""
