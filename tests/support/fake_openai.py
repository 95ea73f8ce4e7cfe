"""A small OpenAI-compatible chat-completions server, standing in for a vision-language model.

A real model (vLLM, Ollama) cannot run on this machine; this server checks the
request the way such a server would (model, two image parts, JSON-schema
response format) and answers as configured::

    with FakeModelServer(answer={"similarity": 0.9, ...}) as model:
        model.mode = "error" | "garbage" | "slow"
        model.requests[-1]   # the decoded JSON payload
        model.max_in_flight  # most requests being answered at once
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeModelServer"]


class FakeModelServer:
    def __init__(self, answer: dict[str, Any], *, model: str = "test-vl", delay: float = 0.0):
        self.answer = answer
        self.model = model
        self.delay = delay
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner._lock:
                    owner.requests.append(payload)
                    owner._in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner._in_flight)
                try:
                    status, body = owner._respond(self.path, payload)
                finally:
                    with owner._lock:
                        owner._in_flight -= 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _respond(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}
        if payload.get("model") != self.model:
            return 404, {"error": {"message": f"model {payload.get('model')!r} not found"}}
        images = [
            part
            for message in payload["messages"]
            if isinstance(message["content"], list)
            for part in message["content"]
            if part.get("type") == "image_url"
        ]
        if len(images) != 2:
            return 400, {"error": {"message": f"expected 2 images, got {len(images)}"}}
        if self.delay or self.mode == "slow":
            time.sleep(self.delay or 5.0)
        if self.mode == "error":
            return 500, {"error": {"message": "CUDA out of memory"}}
        content = "I think they look alike." if self.mode == "garbage" else json.dumps(self.answer)
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
