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
# plugins the probe does not use, off: loading them (schemathesis above all) is ~1.7 s of CPU in each
# of the 6 pytest processes these runs start; the conftest hooks under test load as always
UNUSED_PLUGINS = ("-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:pytest_cov", "-p", "no:anyio")


def run(*args: str, skip: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI": "true", "CI_PROBE_SKIP": "1" if skip else ""}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UNUSED_PLUGINS, *args, PROBE],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)


# one xdist worker is enough: its reports reach the controller as any worker's do (a second one is
# ~0.7 s more CPU per run)
@pytest.mark.parametrize("workers", [[], ["-n", "1"]], ids=["one-process", "xdist"])
def test_a_skip_fails_a_ci_run(workers):
    failed = run(*workers, skip=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "CI=true: 1 test(s) were skipped" in failed.stderr
    assert "tests/ci_probe.py::test_probe" in failed.stderr
    passed = run(*workers, skip=False)
    assert passed.returncode == 0, passed.stdout + passed.stderr
