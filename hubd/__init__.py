"""hubd: a distributed model hub and sync daemon with provenance tracking."""

__version__ = "0.1.0"
