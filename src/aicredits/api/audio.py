"""POST /v1/audio/speech (raw audio bytes) and /v1/audio/transcriptions (multipart/form-data
as the SDKs send it, or the reference's JSON body with base64 `input_audio`)."""

from __future__ import annotations

from aicredits.api.chat import metered_headers
from aicredits.api.forms import read_form
from aicredits.api.http import Request, send_bytes, until_answered
from aicredits.errors import UnsupportedMediaType
from aicredits.services.audio import transcription_from_form, transcription_from_json


async def speech(gw, req: Request, send) -> None:
    auth = await gw.admit(req)
    body = await req.json(gw.settings.max_body_bytes)
    result, meter = await until_answered(
        req.receive, gw.audio.speech(body, auth, req.request_id, req.scope["aicredits.started"]))
    await send_bytes(send, 200, result.body, metered_headers(req.request_id, meter), result.content_type.encode())


async def transcriptions(gw, req: Request, send) -> None:
    auth = await gw.admit(req)
    ctype = (req.header(b"content-type") or b"").decode("latin-1")
    kind = ctype.split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        call = transcription_from_form(await read_form(req, gw.settings.max_body_bytes))
    elif kind in ("application/json", ""):
        call = transcription_from_json(await req.json(gw.settings.max_body_bytes))
    else:
        raise UnsupportedMediaType(f"Send multipart/form-data (with a 'file') or application/json (with "
                                   f"'input_audio'), not {kind}.")
    result, meter = await until_answered(
        req.receive, gw.audio.transcribe(call, auth, req.request_id, req.scope["aicredits.started"]))
    await send_bytes(send, 200, result.body, metered_headers(req.request_id, meter), result.content_type.encode())
