"""Backends behind the ports: one module per backend."""
