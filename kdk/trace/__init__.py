"""eBPF with bcc in the guest: `kdk trace` and experiments' own programs."""
