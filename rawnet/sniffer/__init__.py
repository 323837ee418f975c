"""The sniffer lab (see README.md)."""
