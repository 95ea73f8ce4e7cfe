"""Benchmarks run by ``make bench`` (``python -m benchmarks``); scripts, not tests."""
