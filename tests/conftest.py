"""Shared fixtures: the fake OpenAI upstream, real databases (SQLite always; PostgreSQL and
Redis when reachable, and required when CI=true), and the gateway as a real subprocess
(`start_gateway`) or as uvicorn serving it on a real socket from a thread of the test process
(`serve_gateway`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = os.environ.get("AICREDITS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("AICREDITS_TEST_REDIS", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
USD_INR = "83.5"
MARKUP = "0.15"


# ---------------------------------------------------------------- CI: a skip is a failure
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    # under pytest-xdist the controller receives every worker's reports here too
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput"):   # an xdist worker: the controller judges the whole run
        return
    if IN_CI and _skipped:
        print(f"\nCI=true: {len(_skipped)} test(s) were skipped; in CI every test must run:", file=sys.stderr)
        for nodeid in _skipped:
            print(f"  {nodeid}", file=sys.stderr)
        session.exitstatus = 1


# ---------------------------------------------------------------- bytecode, once per run
def pytest_configure(config):
    """Compile the package and the tests to bytecode (__pycache__/, kept between runs), in the
    controller before any worker starts. Where PYTHONDONTWRITEBYTECODE is set (some CI images and
    containers), Python still reads .pyc files but never writes them, so each of the suite's ~100
    gateway and CLI subprocesses would otherwise compile ~160 modules again: a third of a second
    of CPU every start. Files already compiled are only stat()ed."""
    if hasattr(config, "workerinput"):
        return
    import compileall

    for folder in ("src", "tests"):
        compileall.compile_dir(ROOT / folder, quiet=2)


# ---------------------------------------------------------------- one default SSL context per process
def _share_the_default_ssl_context() -> None:
    """Every HTTP client (each `httpx.get`, each openai SDK client, on httpx2) builds its SSL
    context from a CA bundle (certifi's, or SSL_CERT_FILE/SSL_CERT_DIR): ~25 ms of CPU each,
    thousands of times in a run whose clients only speak plain HTTP to 127.0.0.1. The default
    context (verify=True, no client certificate) is built once per test process for each CA
    setting and shared, as one application shares it; other arguments build their own as before.
    Nothing changes in the processes the tests start (gateways, the CLI)."""
    import importlib

    for package in ("httpx", "httpx2"):
        default = importlib.import_module(f"{package}._transports.default")
        build = default.create_ssl_context
        shared: dict[tuple, object] = {}

        def create_ssl_context(verify=True, cert=None, trust_env=True, build=build, shared=shared):
            if verify is not True or cert is not None:
                return build(verify=verify, cert=cert, trust_env=trust_env)
            where = (trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
            if where not in shared:
                shared[where] = build(verify=verify, cert=cert, trust_env=trust_env)
            return shared[where]
        default.create_ssl_context = create_ssl_context


_share_the_default_ssl_context()


# ---------------------------------------------------------------- parallel runs: the long files first
# `make test` hands whole files to pytest-xdist workers in collection order (--dist loadfile
# --no-loadscope-reorder). These files take the longest (real processes, fault injection, upstream
# timeouts, the browser, schemathesis), longest first as measured in a whole run with three
# workers: started first, they do not leave one worker running a long file alone at the end while
# the others are idle. The real-process files alternate with in-process ones so few of them load
# the machine at once.
LONG_FILES = (
    "tests/cli/test_cli.py",
    "tests/domain/test_pricing.py",
    "tests/test_database_faults.py",
    "tests/domain/test_reservation.py",
    "tests/test_lifecycle.py",
    "tests/services/test_quota.py",
    "tests/api/test_cache_shared.py",
    "tests/api/test_connections.py",
    "tests/test_redis_faults.py",
    "tests/domain/test_media.py",
    "tests/test_concurrency.py",
    "tests/api/test_call_deadline.py",
    "tests/test_quota_processes.py",
    "tests/fakes/test_anthropic_upstream.py",
    "tests/api/test_openapi.py",
    "tests/services/test_settle_journal.py",
    "tests/web/test_browser_history.py",
    "tests/api/test_body_fuzz.py",
    "tests/api/test_rate_limits.py",
    "tests/web/test_auth.py",
    "tests/web/test_browser.py",
    "tests/api/test_cache.py",
    "tests/store/test_backup_restore.py",
    "tests/services/test_payments.py",
    "tests/test_upstream_faults.py",
    "tests/api/test_client_conventions.py",
    "tests/test_money_under_load.py",
    "tests/services/test_routing.py",
    "tests/test_worker_crash.py",
    "tests/infra/test_e5_onnx.py",
    "tests/cli/test_serve_metrics.py",
    "tests/store/test_billing_store.py",
    "tests/web/test_browser_payments.py",
    "tests/domain/test_ratelimit.py",
    "tests/cli/test_first_hour.py",
    "tests/api/test_audio.py",
    "tests/test_ci_skips.py",
    "tests/api/test_responses.py",
)


@pytest.hookimpl(tryfirst=True)   # before --lf/--ff/--nf, which reorder after this
def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))   # stable: order kept within


def unavailable(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not reachable, and CI=true requires it")
    pytest.skip(f"{what} is not reachable")


# ---------------------------------------------------------------- helpers
# One HTTP client for the helpers' own requests (health polls, /api/models, /v1/credits) and the
# tests' one-off calls, instead of a client built per request by httpx.get(). No keep-alive: a
# request still opens and closes its own connection, as httpx.get() does (some tests count a
# gateway's connections, or stop it and expect none left open).
HTTP = httpx.Client(timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_micros(entry: dict, prompt: int, completion: int, cached: int = 0,
                    usd_inr: str = USD_INR, markup: str = MARKUP) -> int:
    """The charge docs/billing.md defines ("The charge formula"), computed independently from an /api/models entry."""
    from decimal import Decimal

    for tier in entry.get("tiers") or ():   # a prompt above a tier's threshold: its prices
        if prompt > tier["above_prompt_tokens"]:
            entry = {**entry, **tier}

    def price(key):
        v = entry.get(key)
        return Fraction(Decimal(repr(v))) if v is not None else None

    inp, out = price("input_cost_per_1m"), price("output_cost_per_1m")
    read = price("cache_read_cost_per_1m") or inp
    usd_per_1m = (prompt - cached) * inp + cached * read + (completion * out if completion else 0)
    factor = Fraction(Decimal(usd_inr)) if entry.get("currency", "USD") == "USD" else 1
    micros = usd_per_1m * factor * (1 + Fraction(Decimal(markup)))   # per-1M price x tokens = micro-units
    return -((-micros.numerator) // micros.denominator)


# ---------------------------------------------------------------- databases
async def _pg_exec(dsn: str, sql: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_reachable() -> bool:
    try:
        asyncio.run(_pg_exec(PG_ADMIN_DSN, "SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - any failure means PostgreSQL is not reachable
        return False


@pytest.fixture(scope="session")
def pg_server():
    if not pg_reachable():
        unavailable("PostgreSQL at 127.0.0.1:5432")
    return PG_ADMIN_DSN


class _PgDatabases:
    """The tests' PostgreSQL databases, made and dropped off the tests' path. DROP DATABASE waits
    (for a checkpoint, for every backend to close the database's files: 0.3-4 s one at a time on
    a busy test machine) and CREATE DATABASE takes 0.2-0.5 s, which no test needs to wait for:
    databases are dropped on a thread of this process, those waiting all at once, while the next
    tests run, and one spare copy of each template asked for (and one empty database) is made
    ahead on another, ready for the next test. The session waits for the last drops, and fails if
    any could not be done."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.drops: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self.makes: queue.SimpleQueue[tuple[str | None] | None] = queue.SimpleQueue()
        self.spares: dict[str | None, list[str]] = {}
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.dropper = threading.Thread(target=self._drop_loop, name="pg-dropper", daemon=True)
        self.maker = threading.Thread(target=self._make_loop, name="pg-maker", daemon=True)
        self.dropper.start()
        self.maker.start()

    def _create(self, template: str | None) -> str:
        name = "aicredits_test_" + uuid.uuid4().hex[:12]
        asyncio.run(_pg_exec(self.dsn, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        return name

    def _drop_loop(self) -> None:
        """Drops what is waiting, all at once (a drop mostly waits: for a checkpoint, for every
        backend to close its files; drops at once share the waits)."""
        done = False
        while not done:
            batch = [self.drops.get()]
            while not self.drops.empty():
                batch.append(self.drops.get())
            done = None in batch
            names = [name for name in batch if name is not None]

            async def drop(name: str) -> None:
                try:
                    await _pg_exec(self.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception as exc:  # noqa: BLE001 - reported when the session ends
                    self.errors.append(f"drop {name}: {type(exc).__name__}: {exc}")

            async def drop_all(names: list[str]) -> None:
                await asyncio.gather(*(drop(name) for name in names))

            asyncio.run(drop_all(names))

    def _make_loop(self) -> None:
        while (item := self.makes.get()) is not None:
            (template,) = item
            with self.lock:
                if self.spares.get(template):   # one spare is enough
                    continue
            try:
                name = self._create(template)
            except Exception:  # noqa: BLE001, S112 - no spare: the next test makes its own
                continue
            with self.lock:
                self.spares.setdefault(template, []).append(name)

    def make(self, template: str | None = None) -> str:
        """A new database (empty, or a copy of `template`): the spare when one is ready."""
        with self.lock:
            ready = self.spares.get(template)
            name = ready.pop() if ready else None
        if name is None:
            name = self._create(template)
        self.makes.put((template,))   # the next one
        return name

    def stop_making(self) -> None:
        if self.maker.is_alive():
            self.makes.put(None)
            self.maker.join()
            with self.lock:
                for names in self.spares.values():
                    for name in names:
                        self.drops.put(name)
                self.spares.clear()

    def close(self) -> None:
        self.stop_making()
        self.drops.put(None)
        self.dropper.join()
        assert not self.errors, f"test databases not dropped: {self.errors}"


@pytest.fixture(scope="session")
def pg_databases(pg_server):
    dbs = _PgDatabases(pg_server)
    yield dbs
    dbs.close()


@pytest.fixture
def make_pg_db(pg_server, pg_databases):
    """Creates uniquely named PostgreSQL databases (empty, or copies of `template`); dropped after
    the test (by `pg_databases`, without waiting)."""
    created = []

    def make(template: str | None = None) -> str:
        name = pg_databases.make(template)
        created.append(name)
        return pg_server.rsplit("/", 1)[0] + "/" + name

    yield make
    for name in created:
        pg_databases.drops.put(name)


@pytest.fixture(scope="module")
def make_module_pg_db(pg_server, pg_databases):
    """make_pg_db for a test file's own fixtures (gateways shared by its tests): empty PostgreSQL
    databases, dropped after the file (by `pg_databases`, without waiting)."""
    created = []

    def make() -> str:
        name = pg_databases.make()
        created.append(name)
        return pg_server.rsplit("/", 1)[0] + "/" + name

    yield make
    for name in created:
        pg_databases.drops.put(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The same test on SQLite and on PostgreSQL (an empty database: the test migrates it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aicredits.db"
    return request.getfixturevalue("make_pg_db")()


async def _migrate(url: str) -> None:
    from aicredits.store.db import make_engine, migrate

    engine = make_engine(url)
    try:
        await migrate(engine, url)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite file migrated to the newest revision once (per test process), for copying."""
    path = tmp_path_factory.mktemp("template") / "aicredits.db"
    asyncio.run(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def pg_template(pg_server, pg_databases):
    """A PostgreSQL database migrated to the newest revision once (per test process); a test's
    database is a copy of it (CREATE DATABASE ... TEMPLATE), which takes a fraction of the time of
    running every migration again."""
    name = "aicredits_tpl_" + uuid.uuid4().hex[:12]
    asyncio.run(_pg_exec(pg_server, f'CREATE DATABASE "{name}"'))
    asyncio.run(_migrate(pg_server.rsplit("/", 1)[0] + "/" + name))
    yield name
    pg_databases.stop_making()   # no copy of it is being made
    pg_databases.drops.put(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_db_url(request, tmp_path):
    """db_url with the schema at the newest revision already: for tests of what runs on the schema
    (their own `migrate()` finds nothing to do), not of the migrations themselves."""
    if request.param == "sqlite":
        path = tmp_path / "aicredits.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("make_pg_db")(template=request.getfixturevalue("pg_template"))


@pytest.fixture(scope="session")
def redis_url():
    import redis
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:  # noqa: BLE001 - any failure means Redis is not reachable
        unavailable("Redis at 127.0.0.1:6379")
    return REDIS_URL


# ---------------------------------------------------------------- the fake upstream
@pytest.fixture(scope="session")
def fake_openai():
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def upstream(fake_openai):
    fake_openai.reset()
    yield fake_openai
    fake_openai.reset()


# ---------------------------------------------------------------- the gateway process
def run_async(fn):
    """asyncio.run(fn()), also from a thread where a loop is running already (sync Playwright keeps
    one): then on a loop of a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fn())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn())).result()


class GatewayProcess:
    def __init__(self, db_url: str, workdir: Path, env: dict[str, str], workers: int = 1) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "AICREDITS_DATABASE_URL": db_url, "AICREDITS_USD_INR": USD_INR,
                    "AICREDITS_MARKUP": MARKUP, **env}
        self.log_path = workdir / f"gateway-{self.port}.log"
        self.workers = workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        """Start `serve` and wait for /health."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> GatewayProcess:
        """Start `serve`, without waiting: several gateways launched one after another start in
        parallel (`wait_ready` each then)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes to it until stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aicredits", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers)],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()   # the child has its own copy
        return self

    def wait_ready(self, attempts: int = 3) -> GatewayProcess:
        """Wait for /health of the launched process. `serve` binds its port before the app starts
        (a connection waits in the backlog until it does), so a request is answered the moment the
        gateway is up: no fixed poll interval to wait out. The free port can be taken by another
        process (an xdist worker) before the gateway binds it: then a new port is tried."""
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while (left := deadline - time.monotonic()) > 0:
            if self.proc.poll() is not None:
                if attempts > 1 and "address already in use" in self.log():
                    self.port = free_port()
                    self.base_url = f"http://127.0.0.1:{self.port}"
                    return self.launch().wait_ready(attempts - 1)
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if HTTP.get(self.base_url + "/health", timeout=httpx.Timeout(min(left, 5.0), connect=0.5)
                            ).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)   # not listening yet (or just exited)
        raise RuntimeError(f"gateway did not become healthy:\n{self.log()}")

    def terminate(self) -> None:
        """SIGTERM to the gateway (and its workers), without waiting for it to exit."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "aicredits", *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"aicredits {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def admin(self, fn):
        """`fn(Admin)` against the gateway's database, run in this process: what the CLI does, without
        the seconds a CLI process takes to start (the CLI itself is tested in tests/cli/)."""
        from aicredits.services.admin import Admin
        from aicredits.store.db import make_engine

        async def go():
            engine = make_engine(self.db_url)
            try:
                return await fn(Admin(engine))
            finally:
                await engine.dispose()
        return run_async(go)

    def create_key(self, credits: str | None = "100", limit: str | None = None, email: str | None = None,
                   rpm: int | None = None, tpm: int | None = None) -> dict:
        """A key, as `aicredits keys create --json` prints it (INR amounts as numbers)."""
        from aicredits.domain.money import inr_to_micros, micros_to_inr

        out = self.admin(lambda a: a.create_key(
            email or f"user-{uuid.uuid4().hex[:8]}@example.com", credits=inr_to_micros(credits) if credits else 0,
            limit=inr_to_micros(limit) if limit is not None else None, rpm=rpm, tpm=tpm))
        return {"key": out["key"], "id": out["id"], "account": out["account"], "name": out["name"],
                "balance": micros_to_inr(out["balance"]),
                "limit": micros_to_inr(out["limit"]) if out["limit"] is not None else None,
                "rpm": out["rpm"], "tpm": out["tpm"]}

    def usage(self, email: str, limit: int = 1000) -> list[dict]:
        """The account's latest usage rows, as `aicredits usage --json` prints them (cost and hold in INR)."""
        from aicredits.domain.money import micros_to_inr

        rows = self.admin(lambda a: a.usage(email, limit))
        return [{**r, "cost": micros_to_inr(r["cost"]), "hold": micros_to_inr(r["hold"])} for r in rows]

    def verify(self) -> list[str]:
        """What `aicredits ledger verify` finds wrong ([] when the whole ledger holds)."""
        return [str(f) for f in self.admin(lambda a: a.verify())]

    def catalog(self) -> dict[str, dict]:
        doc = HTTP.get(self.base_url + "/api/models").json()
        return {e["id"]: e for e in doc["data"]}

    def credits(self, key: str) -> dict:
        return HTTP.get(self.v1 + "/credits", headers={"Authorization": f"Bearer {key}"}).json()


class ServedGateway(GatewayProcess):
    """The gateway as `serve` runs it with one worker (migrated database, uvicorn with the same
    connection guard, lifespan on) but from a thread of this process: a real TCP socket for clients
    with their own HTTP stack (the openai SDK, a browser, schemathesis) without the second or two of
    CPU a new Python process takes to import everything. Not for what needs a process of its own
    (workers, signals, kill -9, its log output, the CLI): those use `start_gateway`."""

    # uvloop as `serve` has it: on asyncio's loop some of schemathesis' malformed requests wait
    # out their client timeout (tests/api/test_openapi.py takes minutes instead of seconds)
    def start(self) -> ServedGateway:
        import uvicorn

        from aicredits.api.connections import ConnectionLimits, guarded_protocol
        from aicredits.app import Gateway
        from aicredits.settings import load_settings
        from aicredits.store.db import make_engine, migrate

        self.workdir.mkdir(parents=True, exist_ok=True)
        settings = load_settings(self.env)

        async def prepare() -> None:
            engine = make_engine(self.db_url)
            try:
                await migrate(engine, self.db_url)
            finally:
                await engine.dispose()
        run_async(prepare)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        limits = ConnectionLimits(settings.header_timeout, settings.body_timeout, settings.max_connections)
        config = uvicorn.Config(Gateway(settings), loop="uvloop", http=guarded_protocol(limits), ws="none",
                                lifespan="on", access_log=False, log_config=None, server_header=False,
                                date_header=False, proxy_headers=False,
                                timeout_graceful_shutdown=settings.drain_seconds)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name=f"gateway-{self.port}")
        self.handler = _ThreadLog(self.log_path, self.thread.name)
        logging.getLogger().addHandler(self.handler)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("the served gateway did not start")
            time.sleep(0.02)
        return self

    def launch(self) -> ServedGateway:
        return self.start()

    def wait_ready(self, attempts: int = 1) -> ServedGateway:
        return self

    def terminate(self) -> None:
        if getattr(self, "thread", None) is not None:
            self.server.should_exit = True

    def stop(self) -> None:
        if getattr(self, "thread", None) is not None and self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(30)
        if getattr(self, "handler", None) is not None:
            logging.getLogger().removeHandler(self.handler)
            self.handler.close()
            self.handler = None


class _ThreadLog(logging.FileHandler):
    """The records logged by one served gateway's thread (at the levels the root logger passes),
    into its log file: what `log()` reads, as it reads a gateway process's output."""

    def __init__(self, path: Path, thread_name: str) -> None:
        super().__init__(path, delay=True)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.addFilter(lambda record: record.threadName == thread_name)


def prepare_database(env: dict[str, str]) -> None:
    """What `serve` does to AICREDITS_DATABASE_URL before it listens: migrate it and, when it has no
    account yet, create the first admin and its key (nothing written but the database)."""
    from aicredits.cli.serve import _prepare
    from aicredits.settings import load_settings

    settings = load_settings(env)
    run_async(lambda: _prepare(settings, None))


def stop_all(gateways) -> None:
    """Stop gateways at once: each is told to stop, then each is waited for (their drains and
    shutdowns overlap instead of following one another)."""
    for gw in gateways:
        gw.terminate()
    for gw in gateways:
        gw.stop()


class GatewayStarter:
    """`start(db_url=None, env=None, workers=1)` -> a running gateway; `start.many(spec, ...)` ->
    several, started in parallel (each spec a dict of start's arguments), in the order given."""

    def __init__(self, tmp_path_factory, fake_openai, cls: type[GatewayProcess]) -> None:
        self.tmp_path_factory, self.fake_openai, self.cls = tmp_path_factory, fake_openai, cls
        self.running: list[GatewayProcess] = []

    def _make(self, db_url: str | None = None, env: dict | None = None, workers: int = 1) -> GatewayProcess:
        workdir = self.tmp_path_factory.mktemp("gw")
        url = db_url or f"sqlite:///{workdir}/aicredits.db"
        # retries off unless a test turns them on: an upstream error is the call's answer
        base_env = {"OPENAI_BASE_URL": self.fake_openai.base_url, "OPENAI_API_KEY": self.fake_openai.api_key,
                    "AICREDITS_RETRIES": "0"}
        gw = self.cls(url, workdir, {**base_env, **(env or {})}, workers)
        self.running.append(gw)   # stopped at the end even when its start fails
        return gw

    def __call__(self, db_url: str | None = None, env: dict | None = None, workers: int = 1) -> GatewayProcess:
        return self._make(db_url, env, workers).start()

    def launch(self, db_url: str | None = None, env: dict | None = None, workers: int = 1) -> GatewayProcess:
        """A gateway whose process is started, not yet waited for (`wait_ready()`)."""
        return self._make(db_url, env, workers).launch()

    def many(self, *specs: dict) -> list[GatewayProcess]:
        gateways = [self._make(**spec) for spec in specs]
        # a database several of them share is prepared first, as the first `serve` on it would
        # (migrated; on an empty one the first admin and its key): processes first started at once
        # on one empty database would wait in turn for the one preparing it (tested on its own in
        # tests/cli/test_concurrent_first_start.py)
        firsts = {gw.db_url: gw for gw in reversed(gateways)}
        for url, gw in firsts.items():
            if sum(g.db_url == url for g in gateways) > 1:
                prepare_database(gw.env)
        for gw in gateways:
            gw.launch()
        for gw in gateways:
            gw.wait_ready()
        return gateways

    def stop(self) -> None:
        stop_all(self.running)


@pytest.fixture(scope="session")
def serve_gateway(tmp_path_factory, fake_openai):
    """serve_gateway(db_url=None, env=None) -> a running ServedGateway (uvicorn in a thread of this
    process, stopped at the end of the session); the same interface as `start_gateway`."""
    start = GatewayStarter(tmp_path_factory, fake_openai, ServedGateway)
    yield start
    start.stop()


@pytest.fixture(scope="module")
def start_gateway(tmp_path_factory, fake_openai):
    """start_gateway(db_url=None, env=None, workers=1) -> a running GatewayProcess (stopped at
    the end of the test file: an idle gateway process still spends CPU on its timers, and dozens
    kept to the end of the session, some with two workers, slowed the whole run);
    start_gateway.many(dict(db_url=..., env=..., workers=...), ...) -> several, started in parallel."""
    start = GatewayStarter(tmp_path_factory, fake_openai, GatewayProcess)
    yield start
    start.stop()


@pytest.fixture(scope="session")
def gateway(serve_gateway):
    """The default gateway: SQLite, the fake OpenAI upstream, rate 83.5 INR/USD, markup 15%; served
    on a real socket from a thread of this process (`serve_gateway`)."""
    return serve_gateway()


@pytest.fixture
def key(gateway):
    return gateway.create_key(credits="100")
