"""The deployment files (docs/operations.md, "Deploy"): what can be checked without a container
engine, which this machine does not run (bench/container.sh builds and starts them where one
runs). Their settings are real ones, the image runs as a non-root user with its health check on
/health/ready, the compose file is the scaled-out shape, the systemd unit is one systemd accepts,
and the backup commands in docs/operations.md are the ones the restore drill runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from aicredits.settings import CONFIG_ENV, ENV_NAMES

ROOT = Path(__file__).resolve().parent.parent


def known(names) -> None:
    unknown = {n for n in names if n.startswith("AICREDITS_")} - set(ENV_NAMES) - {CONFIG_ENV}
    assert not unknown, f"not settings: {sorted(unknown)}"


def test_every_package_data_pattern_ships_files():
    """A package-data glob that matches nothing ships nothing: a file renamed, moved or removed."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ROOT / "src" / "aicredits"
    assert [p for p in patterns["aicredits"] if not any(package.glob(p))] == []


def test_the_image_is_small_non_root_and_checks_readiness():
    text = (ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["python:3.11-slim", "python:3.11-slim"]
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users == ["aicredits"] and "--uid 10001" in text
    assert "HEALTHCHECK" in text and "/health/ready" in text.split("HEALTHCHECK", 1)[1]
    assert re.search(r'^CMD \["serve", .*"--workers", "1"\]', text, re.MULTILINE), "one process per container"
    known(re.findall(r"\b(AICREDITS_[A-Z_]+)=", text))


def test_compose_is_gateways_with_postgresql_and_redis():
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert set(services) == {"gateway", "postgres", "redis", "migrate"}
    gw = services["gateway"]
    env = gw["environment"]
    known(env)
    assert env["AICREDITS_DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["AICREDITS_DATABASE_URL"]
    assert env["AICREDITS_REDIS_URL"] == "redis://redis:6379/0"
    assert "AICREDITS_KEY_MAX_CONCURRENT" in env and "AICREDITS_STATE_DIR" in env
    assert gw["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["migrate"]
    assert all("healthcheck" in services[s] for s in ("postgres", "redis"))


def test_the_systemd_unit_is_accepted_by_systemd(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    unit = (ROOT / "deploy" / "aicredits.service").read_text()
    assert "ExecStart=/opt/aicredits/bin/aicredits serve " in unit and "User=aicredits" in unit
    # the same unit, run from this venv as the current user (the paths and user of the example do not exist here)
    local = unit.replace("/opt/aicredits/bin/aicredits", str(Path(sys.executable).with_name("aicredits")))
    local = re.sub(r"^(User|Group)=.*$", r"\1=root", local, flags=re.MULTILINE)
    path = tmp_path / "aicredits.service"
    path.write_text(local)
    proc = subprocess.run([tool, "verify", str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_the_documented_backup_commands_are_the_drills():
    docs = (ROOT / "docs" / "operations.md").read_text()
    drill = (ROOT / "tests" / "store" / "test_backup_restore.py").read_text()
    for fragment in ('".backup \'', '".restore \'', "pg_dump --format=custom --file=", "--dbname=",
                     "pg_restore --no-owner --exit-on-error --dbname=", "ledger verify", "wallet show --email"):
        assert fragment in docs, fragment
    for fragment in ('f".backup \'{backup}\'"', 'f".restore \'{backup}\'"', '"--format=custom"',
                     '"--no-owner", "--exit-on-error"', '"ledger", "verify"', '"wallet", "show", "--email"'):
        assert fragment in drill, fragment
