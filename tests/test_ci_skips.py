"""With CI=true a skipped test fails the run (tests/conftest.py), also when pytest-xdist runs the
suite in worker processes: the controller sees every worker's reports. A real pytest run of a
probe module whose one test skips when told to."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = "tests/ci_probe.py"


def run(*args: str, skip: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "CI_PROBE_SKIP": "1" if skip else ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, PROBE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_a_skip_fails_a_ci_run(workers):
    failed = run(*workers, skip=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "CI=true: 1 test(s) were skipped" in failed.stderr
    assert "tests/ci_probe.py::test_probe" in failed.stderr
    passed = run(*workers, skip=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
