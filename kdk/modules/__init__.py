"""Kernel modules: build, plan, load and unload, inspect, and make new ones."""
