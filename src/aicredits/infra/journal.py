"""The settle journal: settlements the database did not take, kept on local disk until it does.

One file per settlement, `<call id>.settle.json`, written whole to a temporary name, fsync'd,
renamed into place and the directory fsync'd, so a file either is complete or does not exist,
whatever happens to the process (kill -9 included). Any process with the same directory replays
every file (`pending`) and removes it once the database has the settlement; replaying a file
twice, or two processes replaying it at once, is harmless because settling is idempotent by call
id (docs/billing.md, "The settle journal").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from aicredits.ports import Settlement

log = logging.getLogger("aicredits.billing")
SUFFIX = ".settle.json"


class FileJournal:
    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def _path(self, call_id: str) -> Path:
        if not call_id or not all(c.isalnum() or c in "-_" for c in call_id):
            raise ValueError(f"unsafe call id for a journal file name: {call_id!r}")
        return self.directory / (call_id + SUFFIX)

    def write(self, s: Settlement) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(s.call_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = orjson.dumps({"call_id": s.call_id, "account_id": s.account_id, "key_id": s.key_id,
                             "charge": s.charge, "usage": s.usage, "note": s.note})
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def pending(self) -> list[Settlement]:
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*" + SUFFIX)):
            try:
                rec = orjson.loads(path.read_bytes())
                out.append(Settlement(rec["call_id"], rec["account_id"], rec["key_id"], rec["charge"], rec["usage"],
                                      rec.get("note", "")))
            except FileNotFoundError:   # another process replayed it just now
                continue
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                log.error("unreadable settle journal file %s (left in place): %s", path.name, exc)
        return out

    def remove(self, call_id: str) -> None:
        try:
            self._path(call_id).unlink()
        except FileNotFoundError:
            pass

    def has(self, call_id: str) -> bool:
        return self._path(call_id).exists()
