"""Thin entry points: parse input, call a service."""
