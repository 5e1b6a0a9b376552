"""A streaming `multipart/form-data` reader: the file part goes straight to the media store.

Starlette's `request.form()` spools files through `SpooledTemporaryFile` in the system temp
directory, outside the media root and its size limit; here each chunk of the request body
is parsed as it arrives (`python_multipart`'s push parser) and the file's bytes are handed
to a `PendingUpload`, which enforces the size limit, hashes and writes them. Memory stays at
one body chunk plus the upload's flush buffer, whatever the file's size.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

from ingest.failures import InvalidInputError, MalformedRequestError, invalid_fields
from ingest.media import PendingUpload

FILE_FIELD: Final = "file"
MAX_FIELDS: Final = 16
MAX_FIELD_BYTES: Final = 1024
MAX_FILENAME_CHARS: Final = 255

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


class MalformedFormError(MalformedRequestError):
    """The body is not well-formed `multipart/form-data` (`malformed_request`)."""


class FormFieldError(InvalidInputError):
    """A form field is not acceptable; `field` names it (`validation_error`)."""

    def __init__(self, field: str, message: str) -> None:
        refused = invalid_fields([{"loc": ["body", field], "msg": message, "type": "value_error"}])
        super().__init__(refused.code, refused.message, details=refused.details)
        self.field = field


@dataclass
class MultipartForm:
    """What the form held: text fields, and the file's upload (already written)."""

    fields: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)
    """Fields named `name[]`, which may repeat (OpenAI's `timestamp_granularities[]`)."""
    upload: PendingUpload | None = None
    filename: str | None = None


def safe_filename(raw: str | None) -> str | None:
    """The client's file name as metadata: its last path component, no control characters.

    Never used as a path; trimmed so a hostile name cannot smuggle directories or
    terminal escapes into logs and exports.
    """
    if raw is None:
        return None
    name = re.split(r"[\\/]", raw)[-1]
    name = _CONTROL.sub("", name).strip()
    if name in {"", ".", ".."}:
        return None
    return name[:MAX_FILENAME_CHARS]


def boundary_of(content_type: str) -> bytes:
    """The boundary of a `multipart/form-data` content type."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedFormError("multipart/form-data without a usable boundary")
    return boundary


def _repeatable(name: str) -> bool:
    return name.endswith("[]")


class _Reader:
    """The parser's callbacks: sync, so file bytes are queued and written after each chunk."""

    def __init__(self, begin: Callable[[], PendingUpload]) -> None:
        self.begin = begin
        self.form = MultipartForm()
        self.pending = bytearray()
        self.finished = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._parts = 0

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_FIELDS:
            raise MalformedFormError(f"more than {MAX_FIELDS} form parts")
        self._headers = {}
        self._name = None
        self._is_file = False
        self._value.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in params:
            raise MalformedFormError("a form part has no Content-Disposition name")
        self._name = params[b"name"].decode("utf-8", "replace")
        self._is_file = self._name == FILE_FIELD
        if self._is_file:
            if self.form.upload is not None:
                raise FormFieldError(FILE_FIELD, "send exactly one file")
            raw_filename = params.get(b"filename")
            self.form.filename = safe_filename(
                raw_filename.decode("utf-8", "replace") if raw_filename is not None else None
            )
            self.form.upload = self.begin()
        elif self._name in self.form.fields and not _repeatable(self._name):
            raise FormFieldError(self._name, "field given more than once")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.pending += data[start:end]
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise FormFieldError(self._name or "?", f"longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if not self._is_file and self._name is not None:
            try:
                value = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise FormFieldError(self._name, "not UTF-8") from None
            if _repeatable(self._name):
                self.form.lists.setdefault(self._name, []).append(value)
            else:
                self.form.fields[self._name] = value

    def on_end(self) -> None:
        self.finished = True


async def read_multipart(
    chunks: AsyncIterator[bytes], content_type: str, begin: Callable[[], PendingUpload]
) -> MultipartForm:
    """Parse the form as it streams in; the file part is written through `begin()`'s upload.

    On any error the upload (if one began) is discarded before the error propagates.
    """
    reader = _Reader(begin)
    parser = MultipartParser(
        boundary_of(content_type),
        callbacks={
            "on_part_begin": reader.on_part_begin,
            "on_part_data": reader.on_part_data,
            "on_part_end": reader.on_part_end,
            "on_header_field": reader.on_header_field,
            "on_header_value": reader.on_header_value,
            "on_header_end": reader.on_header_end,
            "on_headers_finished": reader.on_headers_finished,
            "on_end": reader.on_end,
        },
    )
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise MalformedFormError(f"malformed multipart body: {exc}") from None
            if reader.pending and reader.form.upload is not None:
                data = bytes(reader.pending)
                reader.pending.clear()
                await reader.form.upload.write(data)
        if not reader.finished:
            raise MalformedFormError("the multipart body ended before its closing boundary")
    except BaseException:
        if reader.form.upload is not None:
            await reader.form.upload.discard()
        raise
    return reader.form
