"""The settle journal: settlements the database did not take, kept on local disk until it does.

One file per settlement, `<call id>.settle.json`, written whole to a temporary name, fsync'd,
renamed into place and the directory fsync'd, so a file either is complete or does not exist,
whatever happens to the process (kill -9 included). Any process with the same directory replays
every file (`pending`) and removes it once the database has the settlement; replaying a file
twice, or two processes replaying it at once, is harmless because settling is idempotent by call
id (docs/billing.md, "The settle journal").
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------- the grant journal (services/quota.py)
GRANT_PREFIX = "grants-"
GRANT_SUFFIX = ".jsonl"


class GrantJournal:
    """The charges of calls authorized against quota slices, appended one line per call before
    the call is answered, until a batch settle has them in the database.

    One append-only segment file at a time per process, `grants-<pid>-<start>-<seq>.jsonl`, held
    under an exclusive `flock` for as long as the process may still settle it: a lock that can be
    taken belongs to a process that is gone (the kernel drops the locks of a dead process), and
    only such files are replayed by others (`orphans`). A line is `write()`n whole before the call's
    answer (so a killed process loses nothing the kernel has), and each segment is fsync'd before
    the batch settle that takes its lines (`sync`), so a machine crash loses at most the charges of
    one flush interval. Lines: `{"t": "c", ...}` a call's own charge, `{"t": "p", ...}` the
    progress of a call still running (what the sweeper would charge for it), the last line of a
    call counting. A segment is rotated when it grows past `max_bytes`; the new one starts with the
    progress of the calls still running, and the old one is deleted once every charge in it has
    landed (`retire`).
    """

    def __init__(self, directory: str | os.PathLike, *, max_bytes: int = 4 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._stem = f"{GRANT_PREFIX}{os.getpid()}-{time.time_ns()}"
        self.seq = 0
        self._fd: int | None = None
        self._size = 0
        self._dirty = False
        self._old: list[tuple[int, int, Path]] = []   # (seq, fd, path): rotated, not yet all landed

    def _path(self, seq: int) -> Path:
        return self.directory / f"{self._stem}-{seq:06d}{GRANT_SUFFIX}"

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.seq += 1
        path = self._path(self.seq)
        # locked before it has its name, so no replay can take a live segment for an orphan
        tmp = path.with_name("." + path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(tmp, path)
        self._fd, self._size = fd, 0

    def append(self, record: dict[str, Any]) -> int:
        """Write one record (one write(), whole); the segment's number, for `retire`."""
        fd = self._fd
        if fd is None:
            self._open()
            fd = self._fd
            assert fd is not None
        data = orjson.dumps(record) + b"\n"
        os.write(fd, data)
        self._size += len(data)
        self._dirty = True
        return self.seq

    def rotate_if_full(self, running: list[dict[str, Any]]) -> None:
        """Start a new segment when this one is past max_bytes, carrying `running` (progress records
        of the calls still in flight) over to it."""
        if self._fd is None or self._size < self.max_bytes:
            return
        self._old.append((self.seq, self._fd, self._path(self.seq)))
        self._fd = None
        self._open()
        for rec in running:
            self.append(rec)

    def sync(self) -> None:
        """fsync the current segment (run off the event loop, before a batch settle)."""
        if self._fd is not None and self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    def retire(self, oldest_pending: int | None) -> None:
        """Delete the rotated segments none of whose charges is still waiting to land
        (`oldest_pending`: the lowest segment number of a charge not yet in the database)."""
        keep = []
        for seq, fd, path in self._old:
            if oldest_pending is None or seq < oldest_pending:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                os.close(fd)
            else:
                keep.append((seq, fd, path))
        self._old = keep

    def close(self, *, landed: bool) -> None:
        """At shutdown: delete every segment if all its charges landed, else leave them to a replay."""
        files = [(fd, path) for _, fd, path in self._old]
        if self._fd is not None:
            files.append((self._fd, self._path(self.seq)))
        for fd, path in files:
            if landed:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                os.fsync(fd)
            os.close(fd)
        self._old, self._fd = [], None

    def orphans(self) -> list[tuple[int, Path]]:
        """Segments no live process holds, locked by this process now: (fd, path), oldest first.
        Give each back with `done`."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob(GRANT_PREFIX + "*" + GRANT_SUFFIX)):
            if path.name.startswith(self._stem + "-"):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:   # its process is alive
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:   # deleted by its process (all landed) before we got the lock
                os.close(fd)
                continue
            out.append((fd, path))
        return out

    def read(self, fd: int, path: Path) -> list[dict[str, Any]]:
        data = b""
        while chunk := os.read(fd, 1 << 20):
            data += chunk
        out = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:   # a line cut by a machine crash: its call was not answered
                log.error("grant journal %s: an unreadable line was skipped", path.name)
        return out

    def done(self, fd: int, path: Path, *, remove: bool) -> None:
        if remove:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        os.close(fd)
