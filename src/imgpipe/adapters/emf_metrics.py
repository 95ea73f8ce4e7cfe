"""Metrics port on CloudWatch embedded metric format, through Powertools.

Each flush prints one EMF JSON document to stdout; in Lambda, CloudWatch Logs
turns it into metrics (no API call, no added latency). Dimensioned by function::

    metrics = EmfMetrics(namespace="imgpipe", function_name="imgpipe-processor")
    metrics.observe("ProcessingDuration", 1.25)
    metrics.flush()
"""

from __future__ import annotations

from typing import Any

__all__ = ["EmfMetrics"]

_UNITS = {"ProcessingDuration": "Seconds"}


class EmfMetrics:
    """Counts and observations buffered until :meth:`flush`."""

    def __init__(self, *, namespace: str, function_name: str, service: str = "imgpipe") -> None:
        from aws_lambda_powertools import Metrics

        self._metrics: Any = Metrics(namespace=namespace, service=service)
        # Powertools keeps metrics and dimensions at class level, shared by every
        # instance: start clean, and add the dimension once per flushed document.
        self._metrics.clear_default_dimensions()
        self._metrics.clear_metrics()
        self._function = function_name
        self._dimensioned = False

    def incr(self, name: str, value: float = 1.0, **labels: str) -> None:
        self._add(name, value, "Count")

    def observe(self, name: str, value: float, **labels: str) -> None:
        self._add(name, value, _UNITS.get(name, "None"))

    def _add(self, name: str, value: float, unit: str) -> None:
        if not self._dimensioned:
            self._metrics.add_dimension(name="function_name", value=self._function)
            self._dimensioned = True
        self._metrics.add_metric(name=name, unit=unit, value=value)

    def flush(self) -> None:
        """Print what was recorded as EMF (nothing when nothing was recorded)."""
        self._metrics.flush_metrics(raise_on_empty_metrics=False)
        self._dimensioned = False
