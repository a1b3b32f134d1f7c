"""fleetrun: a self-hosted Run Command service for hybrid fleets."""

__version__ = "0.1.0"
