"""VMs: the backends that boot a guest, what they boot, and their state."""
