"""POST /v1/embeddings."""

from __future__ import annotations

from aicredits.api.admission import Admission
from aicredits.api.chat import json_call
from aicredits.api.http import Handler
from aicredits.services.embeddings import EmbeddingsService


def embeddings(admission: Admission, service: EmbeddingsService, max_body: int) -> Handler:
    return json_call(admission, service.create, max_body)
