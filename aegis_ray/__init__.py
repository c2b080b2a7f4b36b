"""aegis-ray: an execution cluster for containerized AI agents, built on Ray."""

__version__ = "0.1.0"
