"""VMs: the backends that boot a guest and what they boot."""
