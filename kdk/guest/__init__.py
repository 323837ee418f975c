"""The host's side of a running guest: SSH commands and guest files."""
