"""The `inspection` command and the demo: the one composition root, the only package that imports all others."""
