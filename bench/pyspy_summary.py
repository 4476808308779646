"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): top functions by own and
cumulative time, and own time by subsystem (HTTP server, upstream client, SQLite writer, JSON,
logging, event loop, gateway code).

    .venv/bin/py-spy record --pid PID --format raw --threads --nonblocking -r 200 -d 10 -o prof.txt
    python bench/pyspy_summary.py prof.txt [--top 20] [--json]

Percentages are of all non-idle samples (py-spy leaves idle threads out unless --idle was given),
i.e. shares of the process's CPU time. Line numbers are dropped: frames aggregate by function.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter

FRAME_RE = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

# own time: the leaf frame (its function and file) decides; the first matching rule wins.
# Rules take (thread name, leaf function, leaf file). Time in C code (orjson, sqlite3, socket
# syscalls, the GC) is charged to the Python line that called it.
CATEGORIES = [
    ("billing: SQLite writer thread, waiting in queue.get (mostly idle)",
     lambda th, fn, f: "sqlite-writer" in th and fn == "SqliteBilling._run"),
    ("billing: SQLite writer thread (SQL, commit)", lambda th, fn, f: "sqlite-writer" in th),
    ("other threads", lambda th, fn, f: th not in ("", "MainThread") and not th.startswith("asyncio")),
    ("uuid4 (request and call ids)", lambda th, fn, f: f == "uuid.py"),
    ("logging (one JSON line per call)", lambda th, fn, f: f.startswith("logging/") or f.endswith("aicredits/logs.py")),
    ("SSE parsing: split, orjson.loads per chunk (and the GC it triggers)",
     lambda th, fn, f: fn.startswith(("OpenAIStream.batches", "event_data", "split_events"))),
    ("SSE relay and metering", lambda th, fn, f: fn.startswith(("StreamMeter", "ChatService.relay", "stream_response"))),
    ("billing: event-loop side (submit, futures, shield)",
     lambda th, fn, f: "aicredits/store/" in f or f.endswith(("services/billing.py", "services/metering.py"))),
    ("uvloop run loop, native (epoll, socket reads, callback dispatch)", lambda th, fn, f: f == "asyncio/runners.py"),
    ("upstream client (aiohttp, multidict, yarl)",
     lambda th, fn, f: f.startswith(("aiohttp/", "multidict/", "yarl/")) or "multidict" in f or "yarl" in f),
    ("HTTP server (uvicorn, httptools)", lambda th, fn, f: f.startswith(("uvicorn/", "httptools/")) or "httptools" in f),
    ("asyncio, Python level (tasks, futures, timeouts)",
     lambda th, fn, f: f.startswith("asyncio/") or f == "_weakrefset.py" or "uvloop" in f),
    ("JSON (orjson / json)", lambda th, fn, f: "orjson" in f or f.startswith("json/")),
    ("gateway: other aicredits code", lambda th, fn, f: "aicredits/" in f),
    ("native: libc / kernel / python runtime", lambda th, fn, f: f.endswith((".so", ".so.6", ".so.1", ".c", ".h"))
     or "libc" in f or "libpython" in f or "python3" in f),
    ("stdlib, other", lambda th, fn, f: True),
]

# frames that wrap everything on their thread (process start-up, the server's run loop, the ASGI
# adapter): left out of the cumulative ranking and of the inclusive rules
ROOT_FILES = ("typer/", "click/", "uvicorn/main.py", "uvicorn/server.py", "uvicorn/_compat.py",
              "uvicorn/middleware/", "asyncio/runners.py", "aicredits/cli/", "aicredits/__main__.py",
              "threading.py")
ROOT_FUNCS = ("<module>", "RequestResponseCycle.run_asgi", "Gateway.__call__", "Gateway.handle")


def is_root(fn: str, file: str) -> bool:
    return file.startswith(ROOT_FILES) or fn in ROOT_FUNCS or file == "aicredits"


# inclusive: the share of samples with at least one frame matching (overlaps; not additive)
INCLUSIVE = [
    ("uvicorn/httptools (any frame)", lambda fr: fr.startswith(("uvicorn/", "httptools/"))),
    ("aiohttp (any frame)", lambda fr: fr.startswith("aiohttp/")),
    ("logging (any frame)", lambda fr: fr.startswith("logging/") or fr.endswith("aicredits/logs.py")),
    ("aicredits code below the ASGI entry (any frame)", lambda fr: "aicredits/" in fr),
    ("aicredits.store / billing (any frame)", lambda fr: "aicredits/store/" in fr or "services/billing" in fr),
]


def parse(path: str):
    """-> list of (thread_name, [frames root..leaf as (fn, file)], count)."""
    out = []
    with open(path, errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                count = int(n)
            except ValueError:
                continue
            parts = stack.split(";")
            thread = ""
            if parts and parts[0].startswith("thread ("):
                head = parts.pop(0)
                thread = head.split(": ", 1)[1] if ": " in head else head
            if parts and parts[0].startswith("process "):
                parts.pop(0)
            frames = []
            for p in parts:
                m = FRAME_RE.match(p)
                frames.append((m.group("fn"), m.group("file")) if m else (p, ""))
            out.append((thread, frames, count))
    return out


def summarise(path: str, top: int = 20) -> dict:
    stacks = parse(path)
    total = sum(c for _, _, c in stacks) or 1
    own, cum, cats, threads = Counter(), Counter(), Counter(), Counter()
    incl = Counter()
    for thread, frames, c in stacks:
        threads[thread or "?"] += c
        if not frames:
            cats["(no frames)"] += c
            continue
        fn, file = frames[-1]
        own[f"{fn} ({file})"] += c
        for name in {f"{f} ({fl})" for f, fl in frames if not is_root(f, fl)}:
            cum[name] += c
        for cat, rule in CATEGORIES:
            if rule(thread, fn, file):
                cats[cat] += c
                break
        files = [fl for f, fl in frames if not is_root(f, fl)]
        for name, rule in INCLUSIVE:
            if any(rule(fl) for fl in files):
                incl[name] += c

    def pct(n: int) -> float:
        return round(100 * n / total, 1)

    return {
        "file": path,
        "samples": total,
        "threads": {k: pct(v) for k, v in threads.most_common()},
        "own_by_category": {k: pct(v) for k, v in cats.most_common()},
        "inclusive": {k: pct(v) for k, v in incl.most_common()},
        "top_own": [(k, pct(v)) for k, v in own.most_common(top)],
        "top_cumulative": [(k, pct(v)) for k, v in cum.most_common(top)],
    }


def render(s: dict) -> str:
    lines = [f"{s['file']}: {s['samples']} samples (non-idle)", "", "| thread | % |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s["threads"].items()]
    lines += ["", "| own time by subsystem | % |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s["own_by_category"].items()]
    lines += ["", "| inclusive (stack contains) | % |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s["inclusive"].items()]
    lines += ["", "| top functions, own time | % |", "|---|---:|"]
    lines += [f"| `{k}` | {v} |" for k, v in s["top_own"]]
    lines += ["", "| top functions, cumulative | % |", "|---|---:|"]
    lines += [f"| `{k}` | {v} |" for k, v in s["top_cumulative"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", nargs="+")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for p in args.profile:
        s = summarise(p, args.top)
        print(json.dumps(s, indent=2) if args.json else render(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
