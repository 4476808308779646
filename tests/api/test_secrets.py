"""Secrets never leak: a gateway is driven through successful, streaming and failing calls, bad and
revoked keys and the CLI; then its log must hold no client key, no upstream key and no password, and
no response a client received may hold the upstream key."""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid

import httpx
import openai
import pytest

from tests.cli.invoke import in_process
from tests.fakes.openai_upstream import Scenario

MODEL = "openai/gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello"}]
PASSWORD = "S3cret-pass-123"
KEY_RE = re.compile(r"sk-[0-9a-f]{64}")
ACCOUNT_IDS = ("org-8bKzPvQ3xR1mN2jL5tY7wC9a", "proj_Ab12Cd34Ef56Gh78Ij90Kl", "5f1c2a3b-4d5e-6f70-8192-a3b4c5d6e7f8")


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


class Run:
    """What one driven gateway produced."""

    def __init__(self, gw, upstream) -> None:
        self.gw = gw
        self.upstream = upstream
        self.client_keys: list[str] = []
        self.passwords: list[str] = [PASSWORD]
        self.responses: list[tuple[str, int, str]] = []   # (what, status, full body text)
        self.cli_output: list[str] = []

    def record(self, what: str, r: httpx.Response) -> httpx.Response:
        self.responses.append((what, r.status_code, r.text))
        return r

    def cli(self, *args: str, process: bool = False) -> str:
        """`aicredits ARGS` on the gateway's database: in this process (tests/cli/invoke.py), or
        with process=True as a process of its own (what it prints to stderr, logging included)."""
        if process:
            out = self.gw.cli(*args)
        else:
            out = in_process(args, self.gw.env, self.gw.workdir)
            assert out.returncode == 0, f"aicredits {' '.join(args)} failed ({out.returncode}):\n{out.stderr}"
        self.cli_output.append(out.stdout + out.stderr)
        return out.stdout

    def create_key(self, **opts: str) -> dict:
        email = opts.get("email", f"sec-{uuid.uuid4().hex[:8]}@example.com")
        args = ["keys", "create", "--json", "--email", email]
        for name in ("name", "credits", "limit"):
            if name in opts:
                args += [f"--{name}", opts[name]]
        k = json.loads(self.cli(*args))
        self.client_keys.append(k["key"])
        return k

    def post(self, what: str, key: str | None, payload: dict, **kw) -> httpx.Response:
        h = bearer(key) if key is not None else {}
        h.update(kw.pop("headers", {}))
        return self.record(what, httpx.post(self.gw.v1 + "/chat/completions", json=payload, headers=h,
                                            timeout=10, **kw))


@pytest.fixture(scope="module")
def run(start_gateway, fake_openai):
    up = fake_openai
    up.reset()
    gw = start_gateway()
    r = Run(gw, up)
    upkey = up.api_key

    # the first start's admin secrets (written to a private file, never to the log)
    first = (gw.workdir / "aicredits-first-admin.txt")
    if first.exists():
        text = first.read_text()
        r.client_keys += KEY_RE.findall(text)
        m = re.search(r"password:\s*(\S+)", text)
        if m:
            r.passwords.append(m.group(1))

    # CLI: keys and a user with a password
    a = r.create_key(name="main", credits="10")
    b = r.create_key(name="to revoke", credits="5")
    c = r.create_key(name="limited", credits="5", limit="1.5")
    email = f"sec-user-{uuid.uuid4().hex[:8]}@example.com"
    r.cli("users", "create", "--email", email, "--name", "Secret Tester", "--password", PASSWORD, process=True)
    r.cli("keys", "list", "--json")

    # successful calls, streaming calls, the SDK, the other authenticated routes
    r.post("ok", a["key"], {"model": MODEL, "messages": HELLO})
    r.post("ok stream", a["key"], {"model": MODEL, "messages": HELLO, "stream": True,
                                   "stream_options": {"include_usage": True}})
    r.post("ok limited", c["key"], {"model": MODEL, "messages": HELLO, "max_tokens": 50})
    sdk = openai.OpenAI(base_url=gw.v1, api_key=a["key"], max_retries=0)
    out = sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    r.responses.append(("sdk", 200, out.model_dump_json()))
    for ch in sdk.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True):
        r.responses.append(("sdk stream", 200, ch.model_dump_json()))
    r.record("credits", httpx.get(gw.v1 + "/credits", headers=bearer(a["key"]), timeout=10))
    r.record("models", httpx.get(gw.v1 + "/models", headers=bearer(a["key"]), timeout=10))

    # upstream errors whose messages carry the upstream key and the operator's account ids, before
    # output and mid-stream
    leaky = (f"Incorrect API key provided: {upkey}. You can find your API key at https://platform.openai.com. "
             f"Organization {ACCOUNT_IDS[0]}, project {ACCOUNT_IDS[1]}, account {ACCOUNT_IDS[2]}.")
    for status in (401, 403, 400, 422, 404, 429, 500):
        for stream in (False, True):
            up.enqueue(Scenario(status=status, error_type="invalid_request_error",
                                error_message=f"{leaky} (HTTP {status}; auth was 'Bearer {upkey}')"))
            r.post(f"upstream {status} stream={stream}", a["key"],
                   {"model": MODEL, "messages": HELLO, "stream": stream})
    up.enqueue(Scenario(content="one two three four", error_after=1, error_message=leaky))
    r.post("mid-stream error event", a["key"], {"model": MODEL, "messages": HELLO, "stream": True})
    up.enqueue(Scenario(content="one two three four", error_after=0, error_message=leaky))
    r.post("error event before output", a["key"], {"model": MODEL, "messages": HELLO, "stream": True})

    # bad keys
    unknown = "sk-" + secrets.token_hex(32)
    r.client_keys.append(unknown)   # a key-shaped secret a client sent: not to be logged either
    for what, h in [("no key", {}), ("malformed", bearer("sk-bad")), ("unknown", bearer(unknown)),
                    ("basic", {"Authorization": "Basic " + a["key"]}), ("upper", bearer(a["key"].upper()))]:
        r.post(f"bad key: {what}", None, {"model": MODEL, "messages": HELLO}, headers=h)

    # a revoked key
    r.cli("keys", "revoke", b["id"])
    deadline = time.time() + 3
    while True:
        resp = r.post("revoked", b["key"], {"model": MODEL, "messages": HELLO})
        if resp.status_code == 401 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert resp.status_code == 401, resp.text

    time.sleep(0.3)   # let the last log lines reach the file
    yield r
    up.reset()


def test_the_run_exercised_every_path(run):
    statuses = {what: status for what, status, _ in run.responses}
    assert statuses["ok"] == 200 and statuses["ok stream"] == 200 and statuses["ok limited"] == 200
    assert statuses["upstream 401 stream=False"] == 502
    assert statuses["upstream 400 stream=True"] == 400
    assert statuses["bad key: unknown"] == 401 and statuses["revoked"] == 401
    assert len(run.client_keys) >= 4


def test_log_holds_no_client_key(run):
    log = run.gw.log()
    assert log.strip(), "the gateway wrote no log at all"
    for k in run.client_keys:
        assert k not in log, f"a client API key ({k[:7]}…) is in the gateway log"
        assert k[3:] not in log, "a client API key's hex body is in the gateway log"
    assert not KEY_RE.findall(log), "something key-shaped is in the gateway log"


def test_log_holds_no_upstream_key(run):
    log = run.gw.log()
    assert run.upstream.api_key not in log, "the upstream provider key is in the gateway log"


def test_log_holds_no_password(run):
    log = run.gw.log()
    for p in run.passwords:
        assert p not in log, "a password is in the gateway log"


def test_cli_never_echoes_the_password_or_lists_secrets(run):
    text = "\n".join(run.cli_output)
    assert PASSWORD not in text
    listing = run.cli_output[4]    # keys list --json
    assert '"id"' in listing
    for k in run.client_keys:
        assert k not in listing


def test_no_response_holds_the_upstream_key(run):
    upkey = run.upstream.api_key
    leaks = [(what, status, text[max(0, text.index(upkey) - 200):text.index(upkey) + 40])
             for what, status, text in run.responses if upkey in text]
    assert not leaks, f"the upstream key reached the client in: {leaks}"
    errors = [(what, text) for what, status, text in run.responses if status >= 400 or '"error"' in text]
    assert len(errors) >= 20
    for what, text in errors:
        assert "Bearer sk-fake" not in text, what
        assert upkey[3:] not in text, what


def test_no_response_holds_an_operator_account_id(run):
    errors = [(what, text) for what, status, text in run.responses if status >= 400 or '"error"' in text]
    leaks = [(what, i) for what, text in errors for i in ACCOUNT_IDS if i in text]
    assert not leaks, f"operator account ids reached the client in: {leaks}"
    # the provider's words around them still did, where its message is passed on
    passed = [text for what, status, text in run.responses if what.startswith(("upstream 400", "upstream 429"))]
    assert passed and all("Organization [redacted], project [redacted], account [redacted]" in t for t in passed)
