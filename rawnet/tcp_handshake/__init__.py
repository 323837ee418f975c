"""The tcp_handshake lab (see README.md)."""
