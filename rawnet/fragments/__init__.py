"""The fragments lab (see README.md)."""
