"""What every Lambda function of imgpipe builds once per container: settings, services, metrics.

The handlers (:mod:`imgpipe.entrypoints.aws_lambda`) and the SQS record kinds they
serve (:mod:`imgpipe.entrypoints.lambda_records`, also run by ``imgpipe worker``)
share one runtime, so it lives apart from both. Warm invocations reuse its
clients and connections; tests clear it (``runtime.cache_clear()``) to read changed
settings. Nothing heavy is imported until :func:`runtime` is first called.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

from imgpipe.entrypoints.lambda_observability import lambda_logger, tracing

__all__ = ["METRICS_LOCK", "metrics", "runtime"]

# Worker threads share Powertools' class-level metric set: one emitter at a time.
METRICS_LOCK = threading.Lock()


@functools.cache
def runtime() -> Any:
    """Built once per container (warm invocations reuse clients and connections)."""
    from imgpipe.bootstrap import make_fanout
    from imgpipe.settings import Settings

    # Logging and tracing first: the clients made below are then traced from the start.
    lambda_logger()
    tracing()
    settings = Settings()
    return settings, make_fanout(settings)


@functools.cache
def metrics() -> Any:
    """One per process: Powertools keeps metric state at class level."""
    from imgpipe.adapters.emf_metrics import EmfMetrics

    settings, _ = runtime()
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "imgpipe-worker")
    return EmfMetrics(namespace=settings.metrics_namespace, function_name=function)
