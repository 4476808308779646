"""Run by tests/test_ci_skips.py only (its name does not match test_*.py): one test that skips
when CI_PROBE_SKIP is set, to see a CI run fail on it."""

import os

import pytest


def test_probe():
    if os.environ.get("CI_PROBE_SKIP"):
        pytest.skip("the probe skips, as told")
