"""Powertools Logger (JSON) and Tracer (X-Ray) for the Lambda functions, built on first use.

Importing this module costs nothing: Powertools and the X-Ray SDK load when a
function first runs (in a Lambda, during the init phase; see ``aws_lambda``).
Importing ``aws_xray_sdk.core`` and patching botocore and httpx takes most of a
second on a small function, and Powertools' Tracer imports the SDK even when it
is disabled, so outside Lambda (tests, ``imgpipe worker``, the import benchmark)
no Tracer is built at all: :func:`tracing` is a :class:`NullTracing`.

- :func:`observed` wraps a handler: the Lambda context's keys (request id, cold
  start) on every log record, and a ``## <handler>`` subsegment with the
  ``ColdStart`` and ``Service`` annotations (Powertools' ``capture_lambda_handler``).
- :func:`tracing` ``.span(name, batch_id=..., creator=...)`` opens a subsegment
  annotated with the keys, so X-Ray can find every trace of a batch or a creator.
- The correlation keys of :mod:`imgpipe.logs` (``batch_id``, ``creator``) reach
  Powertools' JSON records through :class:`~imgpipe.logs.CorrelationFilter` on
  its handler: one context variable for the CLI and Lambda, so concurrent creators
  (``imgpipe worker --concurrency``) never swap keys as Logger.append_keys would.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar, cast

__all__ = [
    "PATCHED_MODULES",
    "NullTracing",
    "Span",
    "Tracing",
    "XRayTracing",
    "lambda_logger",
    "observed",
    "tracing",
    "tracing_enabled",
]

# The clients the functions use: S3, SQS, DynamoDB (botocore) and cover downloads (httpx).
PATCHED_MODULES = ("botocore", "httpx")
# Our loggers are imgpipe.*: a Powertools Logger on "imgpipe" formats all of them.
LOGGER_NAME = "imgpipe"

Handler = TypeVar("Handler", bound=Callable[..., Any])
Annotation = str | int | float | bool


class Span(Protocol):
    def annotate(self, key: str, value: Annotation) -> None: ...


class Tracing(Protocol):
    """Where the functions record traces; the service layer never sees it."""

    def span(self, name: str, **annotations: Annotation | None) -> AbstractContextManager[Span]:
        """A subsegment named ``name`` with ``annotations`` (None values left out)."""
        ...

    def handler(self, function: Handler) -> Handler:
        """``function`` traced as a Lambda handler."""
        ...


class _NullSpan:
    def annotate(self, key: str, value: Annotation) -> None:
        return None


class NullTracing:
    """Outside Lambda, or with ``POWERTOOLS_TRACE_DISABLED=true``: nothing recorded."""

    @contextmanager
    def span(self, name: str, **annotations: Annotation | None) -> Iterator[Span]:
        yield _NullSpan()

    def handler(self, function: Handler) -> Handler:
        return function


class _XRaySpan:
    def __init__(self, subsegment: Any) -> None:
        self._subsegment = subsegment  # None when the trace is not sampled

    def annotate(self, key: str, value: Annotation) -> None:
        if self._subsegment is not None:
            self._subsegment.put_annotation(key, value)


class XRayTracing:
    """Spans as X-Ray subsegments of a Powertools ``Tracer``."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    @contextmanager
    def span(self, name: str, **annotations: Annotation | None) -> Iterator[Span]:
        with self.tracer.provider.in_subsegment(f"## {name}") as subsegment:
            span = _XRaySpan(subsegment)
            for key, value in annotations.items():
                if value is not None:
                    span.annotate(key, value)
            yield span

    def handler(self, function: Handler) -> Handler:
        # The response is not recorded: a summary names creators and can pass 64 KB.
        traced: Handler = self.tracer.capture_lambda_handler(function, capture_response=False)
        return traced


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def tracing_enabled() -> bool:
    """Powertools' own rule: in a Lambda, not SAM local, not POWERTOOLS_TRACE_DISABLED."""
    if _truthy("POWERTOOLS_TRACE_DISABLED"):
        return False
    if not os.environ.get("LAMBDA_TASK_ROOT"):
        return False
    return not (os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"))


def _service() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or LOGGER_NAME


@functools.cache
def tracing() -> Tracing:
    """The process's tracing, built once: X-Ray in a Lambda, a no-op anywhere else."""
    if not tracing_enabled():
        return NullTracing()
    from aws_lambda_powertools import Tracer
    from aws_xray_sdk.core import xray_recorder

    from imgpipe.entrypoints.xray_context import TaskLambdaContext

    tracer = Tracer(service=_service(), auto_patch=False)
    # Concurrent downloads on one event loop need a subsegment stack per task.
    xray_recorder.configure(context=TaskLambdaContext())
    # Patched here, on first use, not at import: the cold start's import stays cheap.
    # botocore's patch is on the client class, so clients made earlier are traced too.
    tracer.patch(list(PATCHED_MODULES))
    return XRayTracing(tracer)


@functools.cache
def lambda_logger() -> Any:
    """Powertools' JSON Logger over every ``imgpipe.*`` logger, in a Lambda; else None.

    Not in tests or ``imgpipe worker``: those configure logging themselves
    (``--log-format json`` writes the same keys with the standard library).
    """
    if not os.environ.get("LAMBDA_TASK_ROOT"):
        return None
    from aws_lambda_powertools import Logger

    from imgpipe.logs import CorrelationFilter

    logger = Logger(service=LOGGER_NAME, utc=True)
    if _service() != LOGGER_NAME:
        logger.append_keys(service=_service())
    logger.logger_handler.addFilter(CorrelationFilter())
    return logger


def observed(function: Handler) -> Handler:
    """A Lambda handler with Powertools' context keys on its logs and its trace."""

    @functools.wraps(function)
    def handler(event: Any, context: Any = None) -> Any:
        call: Callable[..., Any] = function
        logger = lambda_logger()
        if logger is not None and context is not None:
            call = logger.inject_lambda_context(call)
        return tracing().handler(call)(event, context)

    return cast(Handler, handler)
