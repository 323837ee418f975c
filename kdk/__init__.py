"""kdk: a kit for Linux kernel module and driver development in a throw-away VM."""

__version__ = "0.1.0"
