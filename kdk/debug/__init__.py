"""Debugging the guest kernel from the host: gdb through QEMU's gdb stub."""
