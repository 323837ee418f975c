"""The arp lab (see README.md)."""
