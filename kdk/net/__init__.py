"""Networking labs: the wire into the guest, topologies inside it.

`wire` is the host end of the wire as a scapy socket (its fixed addresses
and socket paths are kdk.vm.link's: the VM backend makes the wire);
`topology` builds network namespaces in the guest through the net agent.
Their pytest fixtures are kdk's plugin's (kdk.testing.net).
"""
