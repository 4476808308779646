"""Dashboard fixtures.

In-process (fast, for logic): `web_gateway` is a started Gateway on a fresh SQLite file
(migrated) and `web_client` an httpx.AsyncClient on it; `signed_up(client, email)` makes an
account through the sign-up form and returns its CSRF token.

Browser (one module, tests/web/test_browser.py): `browser` is Debian's chromium driven by
Playwright (no browser download), shared by the session; `dashboard` is one gateway
served from a thread of the test process (`serve_gateway`), configured with the fake OpenID Connect issuer (`fake_issuer`); `page` is a fresh
browser context and page per test; `shot(page, name)` saves <name>.png (into docs/img/ for
docs/dashboard.md when AICREDITS_TEST_SCREENSHOTS=docs).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from tests.conftest import IN_CI, ROOT, unavailable
from tests.fakes.oidc_issuer import CLIENT_ID, CLIENT_SECRET, FakeIssuer

CHROMIUM = os.environ.get("AICREDITS_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "docs" / "img"
PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = CSRF_RE.search(html)
    assert m, "no csrf_token in the page"
    return m.group(1)


# ---------------------------------------------------------------- argon2, each computation once
_HASHED: dict[tuple, str] = {}
_VERIFIED: dict[tuple, BaseException | None] = {}


@pytest.fixture(autouse=True, scope="module")
def argon2_once():
    """Every password hash and check of these tests is real argon2id at the library's parameters
    (the production code is untouched; test_auth checks a stored hash's parameters), but one
    already computed in this process is not computed again: the same password hashes to the same
    (salted once) string, and the same (hash, password) pair gives the same answer or error. One
    argon2 operation is ~0.2 s of CPU (64 MiB, 4 lanes), and these tests sign up and sign in
    dozens of times with a few passwords."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    real_hash, real_verify = PasswordHasher.hash, PasswordHasher.verify

    def hash_once(self, password, *, salt=None):
        if salt is not None:
            return real_hash(self, password, salt=salt)
        key = (self.time_cost, self.memory_cost, self.parallelism, self.hash_len, self.salt_len, self.type, password)
        if key not in _HASHED:
            _HASHED[key] = real_hash(self, password)
        return _HASHED[key]

    def verify_once(self, hash, password):
        key = (hash, password)
        if key not in _VERIFIED:
            try:
                real_verify(self, hash, password)
                _VERIFIED[key] = None
            except (VerificationError, InvalidHashError) as e:    # kept, raised again
                _VERIFIED[key] = e
        error = _VERIFIED[key]
        if error is not None:
            raise type(error)(*error.args)
        return True

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PasswordHasher, "hash", hash_once)
        mp.setattr(PasswordHasher, "verify", verify_once)
        yield


# ---------------------------------------------------------------- in-process
@pytest.fixture
async def web_gateway(tmp_path, migrated_sqlite):
    """make(env) -> a started in-process Gateway on a migrated SQLite file (a copy of the one
    migrated once per test process; shut down after)."""
    from aicredits.app import Gateway
    from aicredits.settings import load_settings
    from aicredits.store.db import make_engine, migrate

    started = []

    async def make(env: dict | None = None, db_url: str | None = None):
        url = db_url
        if url is None:
            path = tmp_path / f"web-{len(started)}.db"
            shutil.copyfile(migrated_sqlite, path)
            url = f"sqlite:///{path}"
        engine = make_engine(url)
        await migrate(engine, url)
        await engine.dispose()
        gw = Gateway(load_settings({"AICREDITS_DATABASE_URL": url, **(env or {})}))
        await gw.startup()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.shutdown()


def client_for(gw, ip: str = "203.0.113.7", base_url: str = "http://dash.test") -> httpx.AsyncClient:
    """An in-process client of `gw` that comes from `ip`."""
    transport = httpx.ASGITransport(app=gw, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def web_client(web_gateway):
    gw = await web_gateway()
    async with client_for(gw) as client:
        client.gateway = gw
        yield client


async def signed_up(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign up through the form (the client keeps the session cookie); returns the CSRF token."""
    page = await client.get("/dashboard/signup")
    r = await client.post("/dashboard/signup", data={"csrf_token": csrf_of(page.text), "email": email,
                                                     "password": password, "name": "", "invite": ""})
    assert r.status_code == 303, r.text
    return csrf_of((await client.get("/dashboard/keys")).text)


# ---------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def fake_issuer():
    issuer = FakeIssuer().start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def dashboard(serve_gateway, fake_issuer):
    """One served gateway (uvicorn in a thread, a real socket) for the browser tests, with OpenID
    Connect sign-in."""
    return serve_gateway(env={"AICREDITS_OIDC_ISSUER": fake_issuer.url, "AICREDITS_OIDC_CLIENT_ID": CLIENT_ID,
                              "AICREDITS_OIDC_CLIENT_SECRET": CLIENT_SECRET, "AICREDITS_OIDC_NAME": "FakeID"})


@pytest.fixture(scope="module")
def browser():
    """Per module: sync Playwright keeps an event loop running in this thread while it is open, so it
    must be closed before a later module's async tests (pytest-asyncio) start theirs."""
    if not Path(CHROMIUM).exists():
        unavailable(f"chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # launch() gives chromium a new, empty profile directory of its own (--user-data-dir)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, dashboard):
    """A fresh context (no cookies) at phone width unless a test resizes it; base URL: the dashboard."""
    context = browser.new_context(base_url=dashboard.base_url, viewport={"width": 390, "height": 844},
                                  device_scale_factor=1)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture
def shot(tmp_path):
    """shot(page, name): a PNG of the whole page. Into docs/img/ (committed; docs/dashboard.md
    shows them) when AICREDITS_TEST_SCREENSHOTS=docs, else into the test's temporary directory, so
    a test run leaves the working tree as it found it (each run's pages differ: random emails)."""
    folder = SCREENSHOTS if os.environ.get("AICREDITS_TEST_SCREENSHOTS") == "docs" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)

    def take(pg, name: str) -> Path:
        path = folder / f"{name}.png"
        pg.screenshot(path=str(path), full_page=True)
        return path

    return take


__all__ = ["IN_CI", "PASSWORD", "client_for", "csrf_of", "signed_up"]
