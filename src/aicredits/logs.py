"""Logs on stderr: one JSON object per line, or one readable text line per record
(AICREDITS_LOG_FORMAT: `auto`, the default, is text on a terminal and JSON otherwise). Nothing
here ever formats a header, a request body or a setting that could hold a secret."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(time.time(), 3), "level": record.levelname.lower(), "logger": record.name,
               "pid": record.process, "msg": record.getMessage()}
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """`2026-01-31 12:00:00 INFO  aicredits.calls: call request_id=... status=200`: the message,
    then the record's fields as name=value."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if (not text or any(c in text for c in " =\"\n")) else text


def use_text(log_format: str, stream: TextIO | None = None) -> bool:
    """text for `text`, JSON for `json`; `auto`: text when the stream (stderr) is a terminal."""
    if log_format == "auto":
        stream = sys.stderr if stream is None else stream
        return bool(getattr(stream, "isatty", lambda: False)())
    return log_format == "text"


def configure(level: str = "INFO", access_log: bool = True, log_format: str = "auto") -> None:
    # what no line here shows is not gathered per record (the logging HOWTO's "Optimization"):
    # the caller's file, line and function (a walk of the stack per record) and the
    # multiprocessing name; the process id (`pid`) and the thread's name (filters may use it) stay
    logging._srcfile = None
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if use_text(log_format) else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aicredits.calls").setLevel(level if access_log else "WARNING")
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # alembic's INFO lines (plugin set-up, "Context impl ...") say nothing an operator needs
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))
