"""The ping lab (see README.md)."""
