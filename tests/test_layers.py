"""docs/architecture.md, "Layers", checked mechanically: dependencies point inward.

api/web/cli -> services -> domain; store, infra and providers implement interfaces that
services use. Every import statement counts, wherever it sits (module level, inside a
function, under TYPE_CHECKING): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

import aicredits

PACKAGE_ROOT = Path(aicredits.__file__).resolve().parent
IO_LIBRARIES = {"sqlalchemy", "aiohttp", "httpx", "asyncpg", "aiosqlite", "redis", "starlette",
                "uvicorn", "sqlite3", "prometheus_client", "opentelemetry"}
TELEMETRY_LIBRARIES = {"prometheus_client", "opentelemetry"}
DATABASE_LIBRARIES = {"sqlalchemy", "asyncpg", "sqlite3", "alembic", "aiosqlite"}


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE_ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from aicredits import store` imports the aicredits.store package
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if alias.name != "*"]
    return found


SOURCES = sorted(PACKAGE_ROOT.rglob("*.py"))


@cache
def imports_in(path: Path) -> list[tuple[int, str]]:
    """imports_of(path), parsed when a test first asks (not at collection, which every xdist
    worker does for every file: parsing the whole package is ~0.3 s of CPU)."""
    return imports_of(path)


def in_layer(path: Path, layer: str) -> bool:
    return path.relative_to(PACKAGE_ROOT).parts[0] == layer


def top(name: str) -> str:
    return name.split(".")[0]


def is_module(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def ours(name: str) -> bool:
    return is_module(name, "aicredits")


def real_module(name: str) -> bool:
    """Names from `from X import y` may be attributes, not modules; keep them only when they
    are modules of ours that exist, so `from aicredits.domain.money import Micros` is not
    mistaken for a module `aicredits.domain.money.Micros` outside domain."""
    if not ours(name):
        return True
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (PACKAGE_ROOT / rel).is_dir() or (PACKAGE_ROOT / rel).with_suffix(".py").exists()


def violations(paths, bad) -> list[str]:
    out = []
    for path in paths:
        for line, name in imports_in(path):
            if real_module(name) and bad(name):
                out.append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line} imports {name}")
    return sorted(set(out))


def layer(name: str) -> list[Path]:
    return [p for p in SOURCES if in_layer(p, name)]


def test_the_layers_exist():
    for name in ("domain", "services", "store", "api", "cli", "providers"):
        assert layer(name), f"no modules found in aicredits/{name}/"
    assert len(layer("domain")) >= 8


def test_domain_imports_nothing_of_ours_outside_domain():
    bad = violations(layer("domain"), lambda n: ours(n) and not is_module(n, "aicredits.domain"))
    assert bad == []


def test_domain_imports_no_io_library():
    bad = violations(layer("domain"), lambda n: top(n) in IO_LIBRARIES)
    assert bad == []


def test_only_the_store_imports_database_libraries():
    others = [p for p in SOURCES if not in_layer(p, "store")]
    bad = violations(others, lambda n: top(n) in DATABASE_LIBRARIES)
    assert bad == []


def test_services_do_not_import_the_api_or_the_cli():
    bad = violations(layer("services"),
                     lambda n: is_module(n, "aicredits.api") or is_module(n, "aicredits.cli"))
    assert bad == []


def test_services_use_infra_only_through_ports():
    """The rate limiters (infra/) are chosen in app.py; services see the ports.RateLimiter protocol."""
    assert layer("infra")
    bad = violations(layer("services") + layer("domain"), lambda n: is_module(n, "aicredits.infra"))
    assert bad == []


def test_only_infra_imports_the_telemetry_libraries():
    """Services count and trace through aicredits.telemetry's interfaces; prometheus-client and
    OpenTelemetry stay in infra/metrics.py and infra/tracing.py (chosen in app.py)."""
    others = [p for p in SOURCES if not in_layer(p, "infra")]
    bad = violations(others, lambda n: top(n) in TELEMETRY_LIBRARIES)
    assert bad == []
    assert violations(layer("infra"), lambda n: top(n) in TELEMETRY_LIBRARIES)   # the check sees them


def test_api_does_not_import_the_store():
    bad = violations(layer("api"), lambda n: is_module(n, "aicredits.store"))
    assert bad == []


# ------------------------------------------------------------------ the checker itself
@pytest.mark.parametrize("source, package_file, expected", [
    ("import sqlalchemy as sa", "domain/x.py", "sqlalchemy"),
    ("from sqlalchemy.ext.asyncio import AsyncEngine", "domain/x.py", "sqlalchemy.ext.asyncio"),
    ("from ..store import db", "services/x.py", "aicredits.store.db"),
    ("from . import money", "domain/x.py", "aicredits.domain.money"),
    ("from .money import Micros", "domain/__init__.py", "aicredits.domain.money"),
    ("def f():\n    import redis\n", "domain/x.py", "redis"),
    ("from aicredits import store", "api/x.py", "aicredits.store"),
])
def test_the_checker_sees_every_import_form(tmp_path, source, package_file, expected):
    fake_root = tmp_path / "aicredits"
    path = fake_root / package_file
    path.parent.mkdir(parents=True)
    path.write_text(source)
    assert expected in [name for _, name in imports_of(path, fake_root)]
