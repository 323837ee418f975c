"""Kernel modules: build, load, their kernel log, taint and crash reports."""
