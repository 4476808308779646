"""multipart/form-data (RFC 7578): parsing a whole, already size-bounded request body, and
encoding one for an upstream. Only what form uploads use: fields, files, no nesting."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from aicredits.errors import InvalidRequest

MAX_PARTS = 256
_CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "iso-8859-1": "latin-1", "latin-1": "latin-1",
             "latin1": "latin-1", "us-ascii": "ascii", "ascii": "ascii"}
_PARAM_RE = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


@dataclass(frozen=True)
class FilePart:
    name: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Form:
    fields: dict[str, list[str]]
    files: dict[str, FilePart]

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


def _extended_value(charset: str, encoded: str) -> str:
    """An RFC 5987 value in one of the charsets it allows (UTF-8, ISO-8859-1; US-ASCII), or, in
    any other charset or when it does not decode, as sent."""
    codec = _CHARSETS.get(charset.strip().lower() or "utf-8")
    if codec is None:
        return encoded
    try:
        return unquote_to_bytes(encoded).decode(codec)
    except UnicodeError:
        return encoded


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """'form-data; name="file"; filename="a.wav"' -> ('form-data', {'name': 'file', ...})."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for m in _PARAM_RE.finditer(";" + rest):
        key, raw = m.group(1).lower(), m.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if key.endswith("*"):   # RFC 5987: charset'lang'percent-encoded
            charset, _, encoded = raw.partition("'")
            _, _, encoded = encoded.partition("'")
            params[key[:-1]] = _extended_value(charset, encoded)
        else:
            params.setdefault(key, raw)
    return main.strip().lower(), params


def boundary_of(content_type: str) -> str:
    kind, params = header_params(content_type)
    boundary = params.get("boundary", "")
    if kind != "multipart/form-data" or not boundary or len(boundary) > 200:
        raise InvalidRequest("A multipart/form-data body needs a boundary in its Content-Type.")
    return boundary


def parse_form(body: bytes, content_type: str) -> Form:
    """Split a multipart/form-data body into text fields and files; a malformed body is a 400."""
    delim = b"--" + boundary_of(content_type).encode("latin-1")
    bad = InvalidRequest("The multipart/form-data body is malformed.")
    start = body.find(delim)
    if start < 0:
        raise bad
    pos = start + len(delim)
    fields: dict[str, list[str]] = {}
    files: dict[str, FilePart] = {}
    count = 0
    while True:
        if body[pos:pos + 2] == b"--":
            break                                   # the closing delimiter
        eol = body.find(b"\n", pos)                 # rest of the delimiter line (transport padding)
        if eol < 0 or body[pos:eol].strip(b" \t\r"):
            raise bad
        part_start = eol + 1
        end = body.find(b"\r\n" + delim, part_start)
        if end < 0:
            raise bad
        part = body[part_start:end]
        pos = end + 2 + len(delim)
        count += 1
        if count > MAX_PARTS:
            raise InvalidRequest(f"The form has more than {MAX_PARTS} parts.")
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            if not part.strip(b"\r\n"):             # an empty part without headers: nothing to keep
                continue
            raise bad
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n"):
            name, colon, value = line.decode("utf-8", "replace").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        kind, params = header_params(headers.get("content-disposition", ""))
        name = params.get("name")
        if kind != "form-data" or name is None:
            raise bad
        if "filename" in params:
            files[name] = FilePart(name, params["filename"],
                                   headers.get("content-type", "application/octet-stream"), data)
        else:
            try:
                fields.setdefault(name, []).append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidRequest(f"The form field '{name}' is not valid UTF-8.", param=name) from None
    return Form(fields, files)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_form(fields: list[tuple[str, str]], files: list[FilePart]) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data request."""
    boundary = "aicredits-" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{_quote(name)}\"\r\n\r\n"
                ).encode() + value.encode("utf-8") + b"\r\n"
    for f in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{_quote(f.name)}\"; "
                f"filename=\"{_quote(f.filename)}\"\r\nContent-Type: {f.content_type}\r\n\r\n").encode()
        out += f.data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"
