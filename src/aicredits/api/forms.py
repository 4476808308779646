"""multipart/form-data uploads from clients (RFC 7578), parsed as the body arrives by
python-multipart (the parser Starlette uses). The body limit, the number of parts and the size
of a text field hold while the body streams in; only the parts are kept, never the whole body."""

from __future__ import annotations

from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from aicredits.api.http import Request
from aicredits.errors import InvalidRequest
from aicredits.services.audio import Form, FormFile

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_PARTS = 256
MAX_FIELD_BYTES = 1024 * 1024   # a text field (a prompt, a language); files are bounded by the body limit
MAX_BOUNDARY = 200


def malformed() -> InvalidRequest:
    return InvalidRequest("The multipart/form-data body is malformed.")


class _Parts:
    """python-multipart's callbacks, collecting the form's fields and files."""

    def __init__(self) -> None:
        self.form = Form({}, {})
        self.count = 0
        self.ended = False
        self._header_name = self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name = ""
        self._filename: str | None = None
        self._data = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self.begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.data,
                "on_part_end": self.end_part, "on_end": self.end}

    def begin(self) -> None:
        self.count += 1
        if self.count > MAX_PARTS:
            raise InvalidRequest(f"The form has more than {MAX_PARTS} parts.")
        self._headers, self._data = {}, bytearray()

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def headers_finished(self) -> None:
        kind, params = parse_options_header(self._headers.get(b"content-disposition", b"").decode("latin-1"))
        if kind != b"form-data" or b"name" not in params:
            raise malformed()
        self._name = params[b"name"].decode("utf-8", "replace")
        filename = params.get(b"filename")
        self._filename = filename.decode("utf-8", "replace") if filename is not None else None

    def data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if self._filename is None and len(self._data) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"The form field '{self._name}' is longer than {MAX_FIELD_BYTES} bytes.",
                                 param=self._name)

    def end_part(self) -> None:
        if self._filename is not None:
            ctype = self._headers.get(b"content-type", b"").decode("latin-1") or "application/octet-stream"
            self.form.files[self._name] = FormFile(self._filename, ctype, bytes(self._data))
            return
        try:
            self.form.fields.setdefault(self._name, []).append(self._data.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidRequest(f"The form field '{self._name}' is not valid UTF-8.", param=self._name) from None

    def end(self) -> None:
        self.ended = True


async def read_form(req: Request, limit: int) -> Form:
    """The request's form; a 400 when it is malformed, a 413 past `limit` bytes."""
    kind, params = parse_options_header((req.header(b"content-type") or b"").decode("latin-1"))
    boundary = params.get(b"boundary", b"")
    if kind != b"multipart/form-data" or not boundary or len(boundary) > MAX_BOUNDARY:
        raise InvalidRequest("A multipart/form-data body needs a boundary in its Content-Type.")
    parts = _Parts()
    parser = MultipartParser(boundary, parts.callbacks())
    try:
        async for chunk in req.chunks(limit):
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise malformed() from None
    if not parts.ended:   # the body stopped before the closing boundary
        raise malformed()
    return parts.form
