"""`aicredits ARGS` run in this process (typer's CliRunner), answering as a finished subprocess
would: exit code, stdout, stderr (an uncaught exception's traceback on stderr, exit 1). Starting
a Python process that imports the CLI costs about half a second of CPU; the contract tests that
need a real process (the entry point, `serve`, one command of each family) still start one."""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from unittest import mock

import typer.main
import typer.testing
from typer.testing import CliRunner

_build_command = typer.main.get_command


@functools.cache
def _command(app):
    """The click command typer builds from the app: once, as one process of the CLI builds it
    once (typer's CliRunner builds it again on every invoke: a third of an invoke's CPU)."""
    return _build_command(app)


def built_once():
    """A context in which typer's CliRunner uses the command built once (_command)."""
    return mock.patch.object(typer.testing, "_get_command", _command)


def in_process(args: Sequence[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the command with exactly `env` as its environment (other variables unset), in `cwd`."""
    from aicredits.cli.main import app

    environ = {name: None for name in os.environ if name not in env} | dict(env)
    with contextlib.chdir(cwd or os.getcwd()), built_once():
        result = CliRunner().invoke(app, list(args), env=environ, prog_name="python -m aicredits")
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))   # as Python prints it, exit 1
        code = 1
    return subprocess.CompletedProcess(["aicredits", *args], code, result.stdout, stderr)
