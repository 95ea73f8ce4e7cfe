"""A client for any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, Ollama...).

Both images go as base64 ``image_url`` data URLs (already capped in size by the
caller), the answer is constrained by a JSON schema and validated with pydantic.
At most ``max_in_flight`` requests run at once, so the model server's memory
stays bounded however many comparisons arrive::

    client = VisionLanguageClient("http://127.0.0.1:8001", "qwen2-vl", timeout=60)
    verdict = await client.compare(jpeg_a, jpeg_b, prompt="...", aspects=["style"])
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
from pydantic import BaseModel, Field, ValidationError

from imgpipe.errors import ComparisonError

__all__ = ["VisionLanguageClient", "VlmVerdict", "verdict_schema"]


class VlmVerdict(BaseModel):
    similarity: float = Field(ge=0.0, le=1.0)
    similar: bool
    aspects: dict[str, float] = Field(default_factory=dict)
    explanation: str = ""


def verdict_schema(aspects: list[str]) -> dict[str, Any]:
    """The JSON schema the model must answer with."""
    return {
        "type": "object",
        "properties": {
            "similarity": {"type": "number", "minimum": 0, "maximum": 1},
            "similar": {"type": "boolean"},
            "aspects": {
                "type": "object",
                "properties": {a: {"type": "number", "minimum": 0, "maximum": 1} for a in aspects},
                "required": aspects,
                "additionalProperties": False,
            },
            "explanation": {"type": "string"},
        },
        "required": ["similarity", "similar", "aspects", "explanation"],
        "additionalProperties": False,
    }


class VisionLanguageClient:
    """Calls one model; ``ComparisonError`` for timeouts, HTTP errors and bad answers."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout: float = 60.0,
        max_in_flight: int = 1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url or not model:
            raise ComparisonError("the vision-language backend needs IMGPIPE_VLM_URL and _MODEL")
        root = base_url.rstrip("/")
        self.url = root + ("/chat/completions" if root.endswith("/v1") else "/v1/chat/completions")
        self.model = model
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._slots = asyncio.Semaphore(max(1, max_in_flight))
        self._transport = transport

    async def compare(
        self, image_a: bytes, image_b: bytes, *, prompt: str, aspects: list[str]
    ) -> VlmVerdict:
        payload = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": prompt},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare image A with image B."},
                        _image_part(image_a),
                        _image_part(image_b),
                    ],
                },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "image_comparison",
                    "strict": True,
                    "schema": verdict_schema(aspects),
                },
            },
        }
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):
                    async with httpx.AsyncClient(transport=self._transport) as client:
                        response = await client.post(self.url, json=payload, headers=self._headers)
            except TimeoutError as exc:
                raise ComparisonError(f"timeout: no answer within {self.timeout:g} s") from exc
            except httpx.HTTPError as exc:
                raise ComparisonError(f"model_unreachable: {exc!r}") from exc
        if response.status_code != 200:
            detail = response.text[:200]
            raise ComparisonError(f"model_error: HTTP {response.status_code}: {detail}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
            return VlmVerdict.model_validate(json.loads(content))
        except (KeyError, IndexError, TypeError, ValueError, ValidationError) as exc:
            raise ComparisonError(f"model_error: unusable answer: {exc}") from exc


def _image_part(jpeg: bytes) -> dict[str, Any]:
    encoded = base64.b64encode(jpeg).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encoded}"}}
