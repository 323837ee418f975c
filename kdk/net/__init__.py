"""Networking labs: the wire into the guest, topologies inside it.

`link` holds the wire's fixed addresses and socket paths (no third-party
imports: the VM backend uses it); `wire` is the host end as a scapy
socket; `topology` builds network namespaces in the guest through the
net agent; `fixtures` are the pytest fixtures kdk's plugin exposes.
"""
