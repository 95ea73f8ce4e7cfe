"""The HTTP service on Lambda behind API Gateway (HTTP API), through Mangum.

The app is built on the first request, so a cold start that only imports this
module stays cheap; with IMGPIPE_BACKEND=aws batches fan out over S3 + SQS.
Logs are Powertools JSON and requests are traced with X-Ray (``lambda_observability``).
"""

from __future__ import annotations

from typing import Any

from imgpipe.entrypoints.lambda_observability import lambda_logger, observed, tracing

__all__ = ["handler"]

_handler: Any = None


@observed
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _handler
    if _handler is None:
        from mangum import Mangum

        lambda_logger()  # before the app's clients: they are traced from the start
        tracing()

        from imgpipe.entrypoints.api.app import create_app

        _handler = Mangum(create_app(), lifespan="off")
    result: dict[str, Any] = _handler(event, context)
    return result
