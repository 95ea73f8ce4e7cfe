"""Memory watching, as the original system did: warning at 80 %, critical at 90 %.

The batch asks the monitor before starting a creator and before rendering; a
creator that meets the critical level is retried once in safe mode
(:meth:`imgpipe.settings.BatchSpec.safe_mode`) before it is failed.

Example::

    monitor = MemoryMonitor(warning=80.0, critical=90.0)
    if monitor.level() is MemoryLevel.CRITICAL: ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

from imgpipe.errors import ImgpipeError

__all__ = ["MemoryLevel", "MemoryMonitor", "MemoryPressureError", "system_memory_percent"]

log = logging.getLogger(__name__)


class MemoryLevel(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


class MemoryPressureError(ImgpipeError):
    """Raised inside a creator's processing when memory reached the critical level."""


# psutil reads /proc/meminfo in about 0.9 ms; asked before every creator that was a
# tenth of a million-row batch's bookkeeping. Memory does not move that fast.
READING_TTL_SECONDS = 0.25
_last_reading: tuple[float, float] = (-1e9, 0.0)  # (monotonic time, percent)


def system_memory_percent() -> float:
    """The system's memory use in percent, read at most every READING_TTL_SECONDS."""
    global _last_reading
    now = time.monotonic()
    taken, percent = _last_reading
    if now - taken < READING_TTL_SECONDS:
        return percent
    # psutil is imported lazily: the Lambda import path stays light.
    import psutil

    percent = float(psutil.virtual_memory().percent)
    _last_reading = (now, percent)
    return percent


class MemoryMonitor:
    """Classifies memory use; the reader is injectable so tests can simulate pressure."""

    def __init__(
        self,
        *,
        warning: float = 80.0,
        critical: float = 90.0,
        reader: Callable[[], float] = system_memory_percent,
    ) -> None:
        self.warning = warning
        self.critical = critical
        self._reader = reader
        self.peak_percent = 0.0

    def level(self) -> MemoryLevel:
        percent = self._reader()
        self.peak_percent = max(self.peak_percent, percent)
        if percent >= self.critical:
            log.warning("memory at %.1f%% (critical threshold %.1f%%)", percent, self.critical)
            return MemoryLevel.CRITICAL
        if percent >= self.warning:
            log.info("memory at %.1f%% (warning threshold %.1f%%)", percent, self.warning)
            return MemoryLevel.WARNING
        return MemoryLevel.OK

    def check(self) -> None:
        """Raise MemoryPressureError at the critical level."""
        if self.level() is MemoryLevel.CRITICAL:
            raise MemoryPressureError(f"memory use reached the critical level ({self.critical}%)")
