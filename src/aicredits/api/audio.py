"""POST /v1/audio/speech (raw audio bytes) and /v1/audio/transcriptions (multipart/form-data
as the SDKs send it, or the reference's JSON body with base64 `input_audio`)."""

from __future__ import annotations

from aicredits.api.admission import Admission
from aicredits.api.chat import metered_headers
from aicredits.api.forms import read_form
from aicredits.api.http import Handler, Request, Send, send_bytes, until_answered
from aicredits.errors import UnsupportedMediaType
from aicredits.services.audio import AudioService, transcription_from_form, transcription_from_json


def speech(admission: Admission, audio: AudioService, max_body: int) -> Handler:
    async def handle(req: Request, send: Send) -> None:
        auth = await admission.admit(req)
        body = await req.json(max_body)
        result, meter = await until_answered(
            req.receive, audio.speech(body, auth, req.request_id, req.scope["aicredits.started"]))
        await send_bytes(send, 200, result.body, metered_headers(req.request_id, meter),
                         result.content_type.encode())
    return handle


def transcriptions(admission: Admission, audio: AudioService, max_body: int) -> Handler:
    async def handle(req: Request, send: Send) -> None:
        auth = await admission.admit(req)
        ctype = (req.header(b"content-type") or b"").decode("latin-1")
        kind = ctype.split(";", 1)[0].strip().lower()
        if kind == "multipart/form-data":
            call = transcription_from_form(await read_form(req, max_body))
        elif kind in ("application/json", ""):
            call = transcription_from_json(await req.json(max_body))
        else:
            raise UnsupportedMediaType(f"Send multipart/form-data (with a 'file') or application/json (with "
                                       f"'input_audio'), not {kind}.")
        result, meter = await until_answered(
            req.receive, audio.transcribe(call, auth, req.request_id, req.scope["aicredits.started"]))
        await send_bytes(send, 200, result.body, metered_headers(req.request_id, meter),
                         result.content_type.encode())
    return handle
