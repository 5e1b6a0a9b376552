"""structlog set-up: JSON off a TTY, console on one, UTC ISO timestamps, contextvars.

Every line passes through two guards, whatever the format:

- tracebacks are rendered without frame locals and bounded in length: a handler's locals
  hold the caller's `Authorization` header, the key digests, connection URLs, and a rich
  traceback with locals ran to thousands of lines per event, rendered on the event loop;
- a scrubber redacts what looks like a secret (bearer tokens, `scribe_...` keys, the
  password of a URL, values under secret-sounding keys, the values of secret-sounding
  `SCRIBE_*` environment variables such as the configured key digests).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
# A traceback is for finding the failing line, not for reading the program: keep the
# innermost frames and the exception, drop the middle of deep or chained ones.
MAX_TRACEBACK_LINES = 60
MAX_TRACEBACK_FRAMES = 12

_SECRET_KEY = re.compile(
    r"(authorization|password|passwd|pwd|secret|token|api_?keys?|apikey|cookie|"
    r"credential|digest|private_key)",
    re.IGNORECASE,
)
_SECRET_ENV = re.compile(r"^SCRIBE_\w*(PASSWORD|SECRET|TOKEN|API_KEYS?)(_FILE)?$")
_SECRET_WORDS = ("authorization", "password", "passwd", "secret", "token", "apikey", "api_key")
# Each pattern with a cheap test that must pass before the regex runs: lines are logged
# per handled message, and running every regex over every value cost 7x the rendering.
_PATTERNS: tuple[tuple[Callable[[str, str], bool], re.Pattern[str], str], ...] = (
    # A webhook signing secret (`whsec_<base64>`) anywhere, e.g. in an event's repr.
    (
        lambda text, _lower: "whsec_" in text,
        re.compile(r"whsec_[A-Za-z0-9+/=]+"),
        f"whsec_{REDACTED}",
    ),
    # `Bearer <token>` / `Basic <credentials>` in headers, reprs and messages.
    (
        lambda _text, lower: "bearer" in lower,
        re.compile(r"(?i)\b(bearer)(\s+|%20)[A-Za-z0-9._~+/=-]+"),
        rf"\1\2{REDACTED}",
    ),
    (
        lambda _text, lower: "basic" in lower,
        re.compile(r"(?i)\b(basic)(\s+)[A-Za-z0-9+/=]{8,}"),
        rf"\1\2{REDACTED}",
    ),
    # Keys minted by `scribe-ingest hash-key`; not identifiers such as `scribe_indexer`.
    (
        lambda text, _lower: "scribe_" in text,
        re.compile(r"\bscribe_[A-Za-z0-9_-]{20,}"),  # token_urlsafe(32): 43
        REDACTED,
    ),
    # The password of any URL: amqp://user:pass@host, postgresql://user:pass@host.
    (
        lambda text, _lower: "://" in text and "@" in text,
        re.compile(r"(://[^\s:/@'\"]*:)[^\s@/'\"]*@"),
        rf"\1{REDACTED}@",
    ),
    # `password=...`, `"secret": "..."`, `api_key: ...` inside free text.
    (
        lambda _text, lower: any(word in lower for word in _SECRET_WORDS),
        re.compile(
            r"(?i)((?:authorization|password|passwd|secret|token|api_?keys?)"
            r"['\"]?\s*[:=]\s*['\"]?)(?!\[REDACTED\])[^\s'\",}]+"
        ),
        rf"\1{REDACTED}",
    ),
)
_literal_secrets: set[str] = set()


def register_secrets(values: Iterable[str]) -> None:
    """Redact these exact strings (e.g. configured key digests) from every log line."""
    _literal_secrets.update(v for v in values if len(v) >= 8)


def _secrets_from_environment(environ: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for name, value in environ.items():
        if _SECRET_ENV.match(name) and value:
            # A keys map (`{"<digest>": "tenant"}` or `digest tenant` lines): each digest.
            found.extend(re.findall(r"[0-9a-fA-F]{32,}", value))
            if not name.endswith(("_FILE", "_PATH")):
                found.append(value)
        if name.startswith("SCRIBE_") and "://" in value:
            found.extend(re.findall(r"://[^\s:/@]*:([^\s@/]+)@", value))
    return found


def scrub(text: str) -> str:
    """The text with everything that looks like a secret replaced by `[REDACTED]`."""
    for secret in _literal_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    lower = text.lower()
    for applies, pattern, replacement in _PATTERNS:
        if applies(text, lower):
            text = pattern.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _scrub_value(key: str, value: Any, depth: int = 0) -> Any:
    if _secret_key(key) and value not in (None, "", True, False):
        return REDACTED
    if isinstance(value, str):
        return scrub(value)
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {k: _scrub_value(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value("", v, depth + 1) for v in value)
    if isinstance(value, bytes | int | float | bool) or value is None:
        return value
    # Anything else is rendered by its repr, which may hold a secret: scrub that.
    return scrub(repr(value))


def scrub_secrets(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Processor: redact secrets in every value of the event dict."""
    return {key: _scrub_value(key, value) for key, value in event_dict.items()}


def format_traceback(exc: BaseException) -> str:
    """A plain, bounded traceback of `exc`: no frame locals, innermost frames kept."""
    rendered = traceback.TracebackException.from_exception(
        exc, capture_locals=False, limit=-MAX_TRACEBACK_FRAMES
    ).format()
    lines = "".join(rendered).rstrip("\n").splitlines()
    if len(lines) > MAX_TRACEBACK_LINES:
        head = MAX_TRACEBACK_LINES // 4
        tail = MAX_TRACEBACK_LINES - head - 1
        omitted = len(lines) - head - tail
        lines = [*lines[:head], f"  ... {omitted} lines omitted ...", *lines[-tail:]]
    return "\n".join(lines)


def format_exception(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Processor: replace `exc_info` by a bounded, locals-free `exception` string."""
    exc_info = event_dict.pop("exc_info", None)
    if not exc_info:
        return event_dict
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is not None:
        event_dict["exception"] = format_traceback(exc)
    return event_dict


class _ScrubbingFormatter(structlog.stdlib.ProcessorFormatter):
    """A last pass over the rendered line, for what no event-dict value carried."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    def handleError(self, record: logging.LogRecord) -> None:
        # The standard library would print the record's raw arguments, secrets included.
        if logging.raiseExceptions and sys.stderr:
            error = sys.exc_info()[1]
            sys.stderr.write(
                scrub(f"--- logging error in {record.name}: {error!r}; template {record.msg!r}\n")
            )


def configure_logging(
    service: str,
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
) -> None:
    """Route structlog and the standard library's logging through one renderer."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    register_secrets(_secrets_from_environment(os.environ))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        # Exceptions arrive pre-formatted (format_exception); never the rich renderer,
        # whose default shows every frame's locals.
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = _ScrubbingFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            format_exception,
            scrub_secrets,
            renderer,
        ],
    )
    handler = _Handler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-message framework chatter costs CPU and says nothing the handlers don't.
    for noisy in ("aiormq", "aio_pika", "faststream.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
