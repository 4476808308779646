"""Client uploads (api/forms.py): multipart/form-data parsed by python-multipart as the body
arrives, whatever its chunking; the limits (body size, parts, text field size) hold while it
streams; a malformed or unfinished body is a 400. Driven through the ASGI receive channel, as
the server delivers a body."""

from __future__ import annotations

import pytest

from aicredits.api.forms import MAX_FIELD_BYTES, MAX_PARTS, read_form
from aicredits.api.http import Request
from aicredits.errors import InvalidRequest, RequestTooLarge

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 4   # binary, with CR and LF bytes in it


def part(head: str, value: bytes) -> bytes:
    return head.encode("latin-1") + b"\r\n\r\n" + value


def form_body(parts: list[bytes], boundary: str = "xyz") -> bytes:
    delim = b"--" + boundary.encode()
    return b"".join(delim + b"\r\n" + p + b"\r\n" for p in parts) + delim + b"--\r\n"


BODY = form_body([
    part('Content-Disposition: form-data; name="model"', b"openai/whisper-1"),
    part('Content-Disposition: form-data; name="timestamp_granularities[]"', b"word"),
    part('Content-Disposition: form-data; name="timestamp_granularities[]"', b"segment"),
    part('Content-Disposition: form-data; name="prompt"', "नमस्ते".encode()),
    part('Content-Disposition: form-data; name="file"; filename="clip.wav"\r\nContent-Type: audio/wav', WAV),
])


def request(body: bytes, chunk: int, ctype: str = "multipart/form-data; boundary=xyz",
            length: bool = True) -> tuple[Request, list[int]]:
    """A Request whose body the server delivers `chunk` bytes at a time; and the count of
    receive() calls made, to see how much of the body was read."""
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)] or [b""]
    calls = [0]

    async def receive():
        i = calls[0]
        calls[0] += 1
        return {"type": "http.request", "body": pieces[i], "more_body": i < len(pieces) - 1}

    headers = [(b"content-type", ctype.encode("latin-1"))]
    if length:
        headers.append((b"content-length", str(len(body)).encode()))
    return Request({"headers": headers}, receive), calls


@pytest.mark.parametrize("chunk", [1, 3, 64, 1000, 1 << 20])
async def test_a_form_is_read_whatever_the_chunks(chunk):
    req, _ = request(BODY, chunk)
    form = await read_form(req, 1 << 20)
    assert form.fields == {"model": ["openai/whisper-1"], "timestamp_granularities[]": ["word", "segment"],
                           "prompt": ["नमस्ते"]}
    assert form.get("model") == "openai/whisper-1"
    f = form.files["file"]
    assert (f.filename, f.content_type, f.data) == ("clip.wav", "audio/wav", WAV)


async def test_a_file_without_a_content_type_is_octet_stream():
    body = form_body([part('Content-Disposition: form-data; name="file"; filename="a.mp3"', b"ID3...")])
    form = await read_form(request(body, 7)[0], 1 << 20)
    assert form.files["file"].content_type == "application/octet-stream"


async def test_a_body_past_the_limit_is_refused_before_the_rest_is_read():
    body = form_body([part('Content-Disposition: form-data; name="file"; filename="a.wav"', WAV * 100)])
    req, calls = request(body, 1000, length=False)   # no Content-Length: counted as it arrives
    with pytest.raises(RequestTooLarge):
        await read_form(req, 10_000)
    assert calls[0] == 11, "the body was read past the limit"
    req, calls = request(body, 1000)                 # a declared length past the limit: nothing read
    with pytest.raises(RequestTooLarge):
        await read_form(req, 10_000)
    assert calls[0] == 0


async def test_too_many_parts_are_refused():
    parts = [part(f'Content-Disposition: form-data; name="f{i}"', b"x") for i in range(MAX_PARTS + 1)]
    with pytest.raises(InvalidRequest, match=f"more than {MAX_PARTS} parts"):
        await read_form(request(form_body(parts), 4096)[0], 1 << 20)


async def test_a_text_field_past_its_limit_is_refused_while_a_file_may_be_larger():
    big = b"a" * (MAX_FIELD_BYTES + 1)
    body = form_body([part('Content-Disposition: form-data; name="prompt"', big)])
    with pytest.raises(InvalidRequest) as info:
        await read_form(request(body, 65536)[0], 4 << 20)
    assert info.value.param == "prompt"
    body = form_body([part('Content-Disposition: form-data; name="file"; filename="a.wav"', big)])
    assert (await read_form(request(body, 65536)[0], 4 << 20)).files["file"].data == big


@pytest.mark.parametrize("body", [
    BODY[:-20],                                                       # cut before the closing boundary
    b"--xyz\r\ngarbage",
    b"",
    form_body([part('Content-Disposition: attachment; name="model"', b"x")]),   # not form-data
    form_body([part('Content-Disposition: form-data; filename="a.wav"', b"x")]),  # no name
    form_body([part("Content-Type: text/plain", b"x")]),              # no Content-Disposition
    b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyzX",   # a broken delimiter
])
async def test_malformed_forms_are_a_400(body):
    with pytest.raises(InvalidRequest) as info:
        await read_form(request(body, 5)[0], 1 << 20)
    assert info.value.status == 400


async def test_a_field_that_is_not_utf8_is_named():
    body = form_body([part('Content-Disposition: form-data; name="language"', b"\xff\xfe")])
    with pytest.raises(InvalidRequest) as info:
        await read_form(request(body, 5)[0], 1 << 20)
    assert info.value.param == "language"


@pytest.mark.parametrize("ctype", ["multipart/form-data", "multipart/mixed; boundary=xyz",
                                   "multipart/form-data; boundary=" + "b" * 201])
async def test_a_content_type_without_a_usable_boundary_is_a_400(ctype):
    with pytest.raises(InvalidRequest, match="boundary"):
        await read_form(request(BODY, 100, ctype)[0], 1 << 20)
