"""aicredits' own overhead benchmark: the gateway in front of a fast fake upstream, against the
same load sent straight to that upstream.

    .venv/bin/python bench/run.py                 # c1, c64, stream_c64; 10 s each (~1.5 minutes)
    .venv/bin/python bench/run.py --duration 3    # a quick look
    .venv/bin/python bench/run.py --profile       # the same with py-spy attached to the gateway

What it does (everything on 127.0.0.1; every process it starts it stops again, by pid):

1. starts ``bench/upstream.py`` (uvloop, raw asyncio.Protocol; the yardstick mock's exact bodies),
2. starts ``aicredits serve`` on a fresh SQLite file with ``OPENAI_BASE_URL`` pointing at it,
   creates a key with ``aicredits keys create --credits 1000000 --json`` and checks one
   non-streaming and one streaming answer,
3. for each scenario runs wrk (``wrk/chat.lua`` of the shared yardstick, configured through
   ``BENCH_BODY`` / ``BENCH_AUTH``) first straight against the upstream ("direct"), then against
   the gateway, each after a short warm-up,
4. prints a markdown table and writes ``bench/results/latest.json`` (``--name`` changes the stem).

With ``--pin split`` (the default, as in the yardstick) the upstream and the gateway (with all its
threads) run on CPU 0, wrk and this runner on CPU 1: the gateway gets exactly one core.
Standard library only; the upstream runs under the project's .venv python (it needs uvloop).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED_LUA = ROOT.parent / "shared" / "bench" / "wrk" / "chat.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
EXPECTED_TEXT = "Hello! This is the mock upstream answering the benchmark request with a fixed reply."
EXPECTED_USAGE = {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28}
MAX_CONNECTIONS = 256
MAX_DURATION = 120

# used only when the shared yardstick's chat.lua is not there (same contract: BENCH_BODY, BENCH_AUTH)
FALLBACK_LUA = r'''
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
local key = os.getenv("BENCH_AUTH")
if key and key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
'''

SCENARIOS = {
    "c1": {"stream": False, "connections": 1, "title": "non-streaming, 1 connection (latency)"},
    "c64": {"stream": False, "connections": 64, "title": "non-streaming, 64 connections (throughput)"},
    "stream_c64": {"stream": True, "connections": 64, "title": "streaming (SSE), 64 connections (throughput)"},
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def chat_body(model: str, stream: bool) -> str:
    """The yardstick's request body, byte for byte."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello to the benchmark in one short sentence."}],
        "max_tokens": 32,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":"))


# ----------------------------------------------------------------------------- /proc helpers
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def process_tree(pid: int) -> list[int]:
    if not pid or not os.path.exists(f"/proc/{pid}"):
        return []
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat(int(d))
            if f:
                kids.setdefault(int(f[1]), []).append(int(d))
    out, i = [pid], 0
    while i < len(out):
        out.extend(kids.get(out[i], []))
        i += 1
    return out


def tree_cpu_s(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        f = _stat(p)
        if f:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of one process."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def tree_sys_s(pid: int) -> float:
    """Kernel-mode CPU seconds (stime) of the tree: syscalls, loopback TCP, context switches."""
    return sum(int(f[12]) for p in process_tree(pid) if (f := _stat(p))) / CLK_TCK


def tree_rss_mb(pid: int) -> float:
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    kb = sum(int(f[21]) * page_kb for p in process_tree(pid) if (f := _stat(p)))
    return round(kb / 1024, 1)


def machine_proc_cpu_s() -> float:
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:]]
    return (t[0] + t[1] + t[2]) / CLK_TCK


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def set_tree_affinity(pid: int, cpus: set[int]) -> None:
    for p in process_tree(pid):
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                os.sched_setaffinity(int(tid), cpus)
        except OSError:
            pass


def alive(pid: int) -> bool:
    f = _stat(pid)
    return f is not None and f[0] != "Z"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- processes
class Proc:
    """A process started in its own session (process group = its pid), stopped by that group."""

    def __init__(self, name: str, cmd: list[str], env: dict, cwd: Path, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.p.pid

    def wait_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(port):
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited (rc {self.p.returncode}) before listening on {port}; "
                                   f"see {self.log_path}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not listening on {port} after {timeout:g}s; see {self.log_path}")
            time.sleep(0.1)

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        else:
            # the leader is gone; anything left in its group goes too
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()


# ----------------------------------------------------------------------------- requests
def post_chat(port: int, path: str, key: str, stream: bool, model: str) -> tuple[int, str, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request("POST", path, body=chat_body(model, stream), headers=headers)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read().decode("utf-8", "replace"), dict(r.getheaders())
    finally:
        conn.close()


def check_response(status: int, ctype: str, body: str, stream: bool) -> str | None:
    """None when the answer is HTTP 200 with the expected text (and usage), else why not."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if not stream:
        try:
            doc = json.loads(body)
            text = doc["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return f"not a chat.completion ({e}): {body[:200]!r}"
        if text != EXPECTED_TEXT:
            return f"unexpected content {text!r}"
        if any((doc.get("usage") or {}).get(k) != v for k, v in EXPECTED_USAGE.items()):
            return f"usage differs: {doc.get('usage')}"
        return None
    if "text/event-stream" not in ctype:
        return f"Content-Type {ctype!r} is not text/event-stream"
    parts, done, usage = [], False, None
    for line in body.splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            done = True
            continue
        ev = json.loads(payload)
        for ch in ev.get("choices") or []:
            parts.append((ch.get("delta") or {}).get("content") or "")
        usage = ev.get("usage") or usage
    if "".join(parts) != EXPECTED_TEXT:
        return f"streamed content differs: {''.join(parts)!r}"
    if not done:
        return "no data: [DONE]"
    if not usage or any(usage.get(k) != v for k, v in EXPECTED_USAGE.items()):
        return f"usage chunk missing or different: {usage}"
    return None


def validate(port: int, path: str, key: str, stream: bool, model: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            status, ctype, body, headers = post_chat(port, path, key, stream, model)
            why = check_response(status, ctype, body, stream)
            if why is None:
                return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-aicredits")}
            last = why
        except (OSError, http.client.HTTPException, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.3)
    raise RuntimeError(f"no valid {'streaming' if stream else 'non-streaming'} answer on :{port}{path}: {last}")


# ----------------------------------------------------------------------------- wrk
def run_wrk(url: str, body: str, key: str, connections: int, duration: int, lua: Path,
            prefix: list[str]) -> dict:
    if not url.startswith("http://127.0.0.1:"):
        raise SystemExit("refusing to send load anywhere but 127.0.0.1")
    if connections > MAX_CONNECTIONS:
        raise SystemExit(f"refusing more than {MAX_CONNECTIONS} connections")
    env = dict(os.environ, BENCH_BODY=body, BENCH_AUTH=key, BENCH_HEADERS="")
    cmd = prefix + ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency",
                    "-s", str(lua), url]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    m = re.search(r"^BENCH_JSON (\{.*\})$", r.stdout, re.MULTILINE)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed (rc {r.returncode}): {(r.stderr or r.stdout)[-300:]}")
    w = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", r.stdout)
    errors = dict(w["errors"], non2xx=int(non2xx.group(1)) if non2xx else 0)
    secs = w["duration_us"] / 1e6
    lat = w["latency_us"]
    return {
        "duration_s": round(secs, 2),
        "requests": w["requests"],
        "rps": round(w["requests"] / secs, 1) if secs else 0.0,
        "latency_ms": {k: round(lat[k] / 1000, 3) for k in ("p50", "p75", "p90", "p99", "p999", "mean", "max")},
        "errors": errors,
        "error_total": errors["non2xx"] + errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
    }


def measured(url: str, body: str, key: str, connections: int, duration: int, lua: Path, prefix: list[str],
             gateway_pid: int | None, upstream_pid: int) -> dict:
    """One wrk run with the CPU time of the gateway, the upstream, wrk and everything else."""
    g0 = tree_cpu_s(gateway_pid) if gateway_pid else 0.0
    th0 = thread_cpu(gateway_pid) if gateway_pid else {}
    k0 = tree_sys_s(gateway_pid) if gateway_pid else 0.0
    u0, m0, s0 = tree_cpu_s(upstream_pid), machine_proc_cpu_s(), self_cpu_s()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = run_wrk(url, body, key, connections, duration, lua, prefix)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    g = (tree_cpu_s(gateway_pid) - g0) if gateway_pid else None
    u, m, s = tree_cpu_s(upstream_pid) - u0, machine_proc_cpu_s() - m0, self_cpu_s() - s0
    w = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    other = max(0.0, m - (g or 0.0) - u - w - s)
    res["cpu_pct"] = {"gateway": None if g is None else round(100 * g / wall, 1),
                      "upstream": round(100 * u / wall, 1), "wrk": round(100 * w / wall, 1),
                      "other": round(100 * other / wall, 1)}
    if gateway_pid:
        # the event-loop (main) thread vs the others (the SQLite writer, executor threads): exact
        # per-thread CPU from /proc, for the profile's shares
        th1 = thread_cpu(gateway_pid)
        per = {tid: th1[tid] - th0.get(tid, 0.0) for tid in th1}
        res["gateway_kernel_cpu_pct"] = round(100 * (tree_sys_s(gateway_pid) - k0) / wall, 1)
        res["gateway_threads_cpu_pct"] = {
            "main (event loop)": round(100 * per.get(gateway_pid, 0.0) / wall, 1),
            "other threads": round(100 * sum(v for t, v in per.items() if t != gateway_pid) / wall, 1),
        }
    res["gateway_cpu_ms_per_req"] = round(1000 * g / res["requests"], 3) if g and res["requests"] else None
    return res


def warm(url: str, body: str, key: str, seconds: int, lua: Path, prefix: list[str]) -> None:
    if seconds > 0:
        run_wrk(url, body, key, 16, seconds, lua, prefix)


def quiet_check(pids: list[int], window: float = 1.0) -> float:
    """% of one CPU used by processes other than ours over `window` seconds."""
    m0, o0, s0 = machine_proc_cpu_s(), sum(tree_cpu_s(p) for p in pids), self_cpu_s()
    time.sleep(window)
    m1, o1, s1 = machine_proc_cpu_s(), sum(tree_cpu_s(p) for p in pids), self_cpu_s()
    return round(max(0.0, 100 * ((m1 - m0) - (o1 - o0) - (s1 - s0)) / window), 1)


def wait_quiet(pids: list[int], max_wait: float) -> float:
    t0 = time.monotonic()
    while True:
        f = quiet_check(pids)
        if f < 10 or time.monotonic() - t0 >= max_wait:
            return f
        log(f"other processes use {f:.0f}% of a CPU; waiting for quiet")


# ----------------------------------------------------------------------------- meta
def _out(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=cwd, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def source_fingerprint() -> dict:
    """Which gateway code was measured: git HEAD, whether src/ differs from it, and a hash of src/."""
    h = hashlib.sha256()
    for p in sorted((ROOT / "src").rglob("*.py")):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    dirty = _out(["git", "status", "--porcelain", "--", "src"], ROOT)
    return {"git_head": _out(["git", "rev-parse", "--short", "HEAD"], ROOT),
            "src_modified_files": len(dirty.splitlines()) if dirty else 0,
            "src_sha256": h.hexdigest()[:12]}


def machine_meta() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "loadavg": os.getloadavg(),
            "wrk": _out(["wrk", "-v"]).splitlines()[0] if shutil.which("wrk") else None}


# ----------------------------------------------------------------------------- report
def _f(v, nd=1) -> str:
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


def markdown(doc: dict) -> str:
    src = doc["source"]
    title = (f"aicredits bench/run.py — {doc['started']}, pin {doc['pin']}, {doc['duration_s']} s per scenario, "
             f"src {src['git_head']}+{src['src_sha256']}{' (modified)' if src['src_modified_files'] else ''}")
    header = ("| scenario | target | req/s | p50 ms | p99 ms | added p50 vs direct ms | × direct req/s "
              "| gateway CPU % | upstream CPU % | gateway CPU ms/req | errors |")
    lines = [title, "", header,
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, sc in doc["scenarios"].items():
        d = sc.get("direct")
        for tname in ("direct", "gateway"):
            r = sc.get(tname)
            if not r:
                continue
            if "invalid" in r:
                lines.append(f"| {key} | aicredits | – | – | – | – | – | – | – | – | not timed: {r['invalid'][:80]} |")
                continue
            added = ratio = None
            if tname == "gateway" and d and "rps" in d:
                added = r["latency_ms"]["p50"] - d["latency_ms"]["p50"]
                ratio = r["rps"] / d["rps"] if d["rps"] else None
            lines.append(
                f"| {key} | {'aicredits' if tname == 'gateway' else 'direct'} | {_f(r['rps'])} "
                f"| {_f(r['latency_ms']['p50'], 3)} | {_f(r['latency_ms']['p99'], 3)} | {_f(added, 3)} "
                f"| {_f(ratio, 3)} | {_f(r['cpu_pct']['gateway'])} | {_f(r['cpu_pct']['upstream'])} "
                f"| {_f(r['gateway_cpu_ms_per_req'], 3)} | {r['error_total']}"
                f"{' ⚠' if r['error_total'] else ''} |")
    notes = [f"* {n}" for n in doc.get("notes", [])]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="aicredits overhead benchmark (see bench/README.md)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="seconds of warm-up (16 connections) before each run")
    ap.add_argument("--scenarios", default="c1,c64,stream_c64")
    ap.add_argument("--targets", default="direct,gateway", help="direct, gateway or both (default both)")
    ap.add_argument("--pin", choices=("split", "none"), default="split",
                    help="split: gateway+upstream on CPU 0, wrk on CPU 1 (default); none: no taskset")
    ap.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    ap.add_argument("--upstream-port", type=int, default=0, help="fake upstream port (default: a free one)")
    ap.add_argument("--bin", default=os.environ.get("AICREDITS_BIN") or str(ROOT / ".venv" / "bin" / "aicredits"),
                    help="the aicredits CLI (default .venv/bin/aicredits); a .py wrapper runs under --python")
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"),
                    help="python that runs bench/upstream.py (needs uvloop)")
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the gateway, e.g. AICREDITS_ACCESS_LOG=false (repeatable)")
    ap.add_argument("--lua", default=str(SHARED_LUA), help="wrk script (default: the shared yardstick's chat.lua)")
    ap.add_argument("--quiet-wait", type=float, default=30, help="wait up to N s for other processes to go quiet")
    ap.add_argument("--profile", action="store_true",
                    help="attach py-spy (raw format) to the gateway during each of its runs; numbers are then "
                         "with a profiler attached. Summaries via bench/pyspy_summary.py")
    ap.add_argument("--profile-native", action="store_true",
                    help="with --profile: also native (C/Cython) frames; py-spy then pauses the gateway "
                         "for every sample (slower)")
    ap.add_argument("--time-invalid", action="store_true",
                    help="time the gateway even where its answer failed validation (flagged in the table)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default="latest")
    ap.add_argument("--keep-state", action="store_true", help="keep the state dir (database, logs)")
    args = ap.parse_args(argv)

    if args.duration < 1 or args.duration > MAX_DURATION:
        ap.error(f"--duration must be 1..{MAX_DURATION}")
    scen = [s for s in args.scenarios.split(",") if s]
    for s in scen:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    targets = [t for t in args.targets.split(",") if t]
    if not set(targets) <= {"direct", "gateway"}:
        ap.error("--targets takes direct and/or gateway")
    if not shutil.which("wrk"):
        ap.error("wrk is not installed (apt-get install wrk, or the yardstick's setup.sh)")
    cli = args.bin
    if cli.endswith(".py") and os.path.isfile(cli):
        cli_cmd = [args.python, os.path.abspath(cli)]      # a wrapper script such as bench/ablate_cli.py
    else:
        if not (os.path.isfile(cli) and os.access(cli, os.X_OK)):
            cli = shutil.which("aicredits") or ""
        cli_cmd = [cli]
        if not cli:
            ap.error(f"no aicredits CLI at {args.bin} (make install)")
    extra_env = {}
    for kv in args.env:
        name, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--env wants NAME=VALUE, got {kv!r}")
        extra_env[name] = value

    state = Path(tempfile.mkdtemp(prefix="aicredits-bench-"))
    lua = Path(args.lua)
    if not lua.is_file():
        lua = state / "chat.lua"
        lua.write_text(FALLBACK_LUA)
    server_prefix, wrk_prefix = [], []
    if args.pin == "split":
        if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
            ap.error("--pin split needs 2 CPUs and taskset; use --pin none")
        server_prefix, wrk_prefix = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
        os.sched_setaffinity(0, {1})
    up_port = args.upstream_port or free_port()
    gw_port = args.port or free_port()
    for p in (up_port, gw_port):
        if port_open(p):
            ap.error(f"port {p} is already in use")

    procs: list[Proc] = []
    profilers: list[subprocess.Popen] = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    doc: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "pin": args.pin, "duration_s": args.duration,
                 "warmup_s": args.warmup, "machine": machine_meta(), "source": source_fingerprint(),
                 "gateway_env": extra_env, "profiled": args.profile, "lua": str(lua), "scenarios": {}, "notes": []}
    rc = 0
    try:
        log(f"state in {state}; upstream :{up_port}, gateway :{gw_port}, pin {args.pin}")
        up = Proc("upstream", server_prefix + [args.python, str(HERE / "upstream.py"), "--port", str(up_port)],
                  dict(os.environ), state, state / "upstream.log")
        procs.append(up)
        up.wait_port(up_port, 15)
        upstream_url = f"http://127.0.0.1:{up_port}/v1"

        gw = None
        key = ""
        invalid: dict[bool, str] = {}   # stream? -> why the gateway's answer was not valid
        if "gateway" in targets:
            env = dict(os.environ, OPENAI_BASE_URL=upstream_url, OPENAI_API_KEY="sk-bench-mock",
                       AICREDITS_DATABASE_URL=f"sqlite:///{state}/aicredits.sqlite3", **extra_env)
            t0 = time.monotonic()
            gw = Proc("gateway", server_prefix + [*cli_cmd, "serve", "--host", "127.0.0.1", "--port", str(gw_port)],
                      env, state, state / "server.log")
            procs.append(gw)
            gw.wait_port(gw_port, 60)
            r = subprocess.run([*cli_cmd, "keys", "create", "--credits", "1000000", "--json"], env=env, cwd=state,
                               capture_output=True, text=True, timeout=60, check=False)
            if r.returncode != 0:
                raise RuntimeError(f"keys create failed: {r.stderr[-500:]}")
            key = json.loads(r.stdout)["key"]
            hdrs, first_valid = {}, None
            for stream in (False, True):
                try:
                    h = validate(gw_port, "/v1/chat/completions", key, stream, args.model,
                                 timeout=5 if stream else 20)
                    if not hdrs:
                        hdrs, first_valid = h, round(time.monotonic() - t0, 2)
                except RuntimeError as e:
                    invalid[stream] = str(e)
                    log(f"gateway: {e}")
            doc["gateway"] = {"start_to_first_valid_s": first_valid,
                              "version": _out([*cli_cmd, "--version"]), "rss_idle_mb": tree_rss_mb(gw.pid),
                              "threads": len(os.listdir(f"/proc/{gw.pid}/task")),
                              "headers_seen": hdrs}
            if args.pin == "split":
                set_tree_affinity(gw.pid, {0})
            log(f"gateway up ({doc['gateway']['version']}), pid {gw.pid}, "
                f"{doc['gateway']['start_to_first_valid_s']} s to the first valid answer")
        validate(up_port, "/v1/chat/completions", "", False, args.model)
        validate(up_port, "/v1/chat/completions", "", True, args.model)
        if args.pin == "split":
            set_tree_affinity(up.pid, {0})

        urls = {"direct": f"{upstream_url}/chat/completions",
                "gateway": f"http://127.0.0.1:{gw_port}/v1/chat/completions"}
        keys = {"direct": "", "gateway": key}
        for s in scen:
            sc = SCENARIOS[s]
            body = chat_body(args.model, sc["stream"])
            doc["scenarios"][s] = {"title": sc["title"]}
            for t in targets:
                if t == "gateway" and sc["stream"] in invalid:
                    why = invalid[sc["stream"]]
                    if not args.time_invalid:
                        doc["scenarios"][s][t] = {"invalid": why}
                        doc["notes"].append(f"{s}/gateway not timed: {why} (--time-invalid times it anyway)")
                        log(f"{s:10s} gateway  not timed: invalid answer")
                        continue
                    doc["notes"].append(f"{s}/gateway timed although its answer is not valid: {why}")
                warm(urls[t], body, keys[t], args.warmup, lua, wrk_prefix)
                other = wait_quiet([up.pid] + ([gw.pid] if gw else []), args.quiet_wait)
                prof = None
                if args.profile and t == "gateway":
                    out = Path(args.out) / f"{args.name}-pyspy-{s}.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    cmd = [str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--pid", str(gw.pid), "--format", "raw",
                           "--output", str(out), "--duration", str(args.duration), "--rate", "200",
                           "--threads"] + (["--native"] if args.profile_native else ["--nonblocking"])
                    prof = subprocess.Popen(wrk_prefix + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    profilers.append(prof)
                    time.sleep(0.3)
                res = measured(urls[t], body, keys[t], sc["connections"], args.duration, lua, wrk_prefix,
                               gw.pid if t == "gateway" else None, up.pid)
                res["other_cpu_before_pct"] = other
                if prof is not None:
                    _, err = prof.communicate(timeout=args.duration + 30)
                    if prof.returncode != 0 or not out.exists():
                        doc["notes"].append(f"{s}: py-spy failed (rc {prof.returncode}): {err.decode()[-300:]}")
                    res["profile"] = str(out)
                if res["cpu_pct"]["other"] >= 15:
                    doc["notes"].append(f"{s}/{t}: other processes used {res['cpu_pct']['other']}% of a CPU "
                                        "during the run; re-run on a quiet machine")
                if res["error_total"]:
                    doc["notes"].append(f"{s}/{t}: {res['error_total']} errors {res['errors']}")
                doc["scenarios"][s][t] = res
                log(f"{s:10s} {t:8s} {res['rps']:>10,.1f} req/s  p50 {res['latency_ms']['p50']:.3f} ms  "
                    f"p99 {res['latency_ms']['p99']:.3f} ms  gw CPU {_f(res['cpu_pct']['gateway'])}%  "
                    f"upstream CPU {res['cpu_pct']['upstream']}%  errors {res['error_total']}"
                    + (f"  kernel {res['gateway_kernel_cpu_pct']}%  threads {res['gateway_threads_cpu_pct']}"
                       if "gateway_threads_cpu_pct" in res else ""))
            if gw and "gateway" in targets and sc["stream"] not in invalid:
                validate(gw_port, "/v1/chat/completions", key, sc["stream"], args.model)
        if gw:
            doc["gateway"]["rss_after_mb"] = tree_rss_mb(gw.pid)
        if args.profile:
            doc["notes"].append("py-spy was attached to the gateway during its runs: its numbers include the "
                                "profiler's cost")
    except KeyboardInterrupt:
        log("interrupted")
        rc = 130
    except RuntimeError as e:
        log(f"failed: {e}")
        doc["error"] = str(e)
        rc = 1
    finally:
        for p in profilers:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        for p in reversed(procs):
            p.stop()
        if args.keep_state:
            log(f"state kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{args.name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    (out_dir / f"{args.name}.md").write_text(md)
    print(md)
    if args.profile:
        for s, sc in doc["scenarios"].items():
            path = (sc.get("gateway") or {}).get("profile")
            if path and os.path.exists(path):
                print(f"\n### py-spy: {s}\n")
                subprocess.run([sys.executable, str(HERE / "pyspy_summary.py"), path, "--top", "15"], check=False)
    log(f"wrote {out_dir / (args.name + '.json')} and .md")
    return rc


if __name__ == "__main__":
    sys.exit(main())
