"""POST /v1/images/generations."""

from __future__ import annotations

from aicredits.api.admission import Admission
from aicredits.api.chat import json_call
from aicredits.api.http import Handler
from aicredits.services.images import ImagesService


def images_generations(admission: Admission, service: ImagesService, max_body: int) -> Handler:
    return json_call(admission, service.create, max_body)
