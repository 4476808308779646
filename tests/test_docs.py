"""The docs check: every command in README.md and docs/*.md is run or checked, so none goes stale.

What it reads: every fenced block tagged sh, bash, shell or console (a console block's commands
are its `$ ` lines), every python block, and the inline code spans of the prose. Each command line
(backslash continuations joined, `# comments` dropped, `NAME=value` prefixes taken as its
environment) is handled by its program:

- `aicredits ...` (also `.venv/bin/aicredits`): in a fenced block, run in this process, in the
  order of the docs, against a fresh SQLite database that holds an account with a key and an
  admin with an admin key (the doc's placeholders, PLACEHOLDERS below, name those); `serve` is
  only parsed. It must exit 0, or the status its comment names (`# exits 1`). In an inline code
  span, the command path and every `--option` must exist (`aicredits keys create [--email E]`).
- blocks with `curl` (and their shell variables, `jq`, `aicredits`): run by bash, block by block,
  against one live gateway started on a free port, with the demo model; `127.0.0.1:8000` is
  replaced by its address, and `KEY`, `ADMIN_KEY` hold the first admin's key and an admin key (a doc
  line that sets one of them to a placeholder such as `sk-...` is skipped). curl runs with
  `--fail-with-body`, so an error status fails. Python blocks that call 127.0.0.1:8000 run against
  a gateway too; every python block must compile; every toml block must load as the
  configuration file.
- `make T [VAR=value]`: T is a Makefile target and VAR a Makefile variable.
- `python path/to/script.py --opt`: the script exists and its `--help` names every option.
- `pip install 'aicredits[extra]'`: the extra exists in pyproject.toml.
- anything else: its program must be in OTHER_PROGRAMS, with the reason it is not run here.

A bare fence (no language) whose lines start with a known program fails: tag it `sh` so it is
checked. Also: every relative link (and `docs/…`, `src/…` path) in the docs points at a file that exists, every AICREDITS_*
name in the docs is a setting (or a variable of the tests or the bench), every setting is
documented in docs/, docs/cli.md names every CLI command and option, and every route of the
OpenAPI document is in README.md and docs/api.md (admin routes in docs/admin-api.md).

A failure names the file and line of each command that no longer works.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}

# Programs a doc may name that this check does not run, each with the reason.
OTHER_PROGRAMS = {
    "docker": "needs a container engine; bench/container.sh runs the image where one exists",
    "systemctl": "changes the host's services; tests/test_packaging.py verifies the unit file",
    "journalctl": "reads the host's journal",
    "sqlite3": "backup/restore: tests/store/test_backup_restore.py runs these commands",
    "pg_dump": "backup/restore: tests/store/test_backup_restore.py runs these commands",
    "pg_restore": "backup/restore: tests/store/test_backup_restore.py runs these commands",
    "createdb": "creates a database on the operator's PostgreSQL server",
    "psql": "runs SQL on the operator's PostgreSQL server",
    "nginx": "the operator's reverse proxy; tests/test_lifecycle.py runs one",
    "git": "fetches the repository",
    "cd": "shell builtin",
    "export": "shell builtin",
    "source": "shell builtin; the path is checked to be .venv/bin/activate",
    "pip": "installs packages; an 'aicredits[extra]' is checked to exist",
    "redis-cli": "talks to the operator's Redis",
    "bash": "runs a script of the external yardstick (docs/performance.md), not in this repository",
    "python3 run.py": "the external yardstick's runner (docs/performance.md), not in this repository",
}
# Of those, the subcommands a doc may use (a misspelt one fails).
SUBCOMMANDS = {
    "docker": {"build", "run", "compose", "exec", "logs", "ps", "stop", "pull", "push", "info"},
    "systemctl": {"start", "stop", "restart", "reload", "enable", "disable", "status", "daemon-reload", "kill"},
    "git": {"clone", "pull", "fetch", "checkout"},
}
# Placeholders of the docs, replaced by the fixtures' values when a CLI command is run.
PLACEHOLDERS = ("KEY_ID", "E", "EMAIL", "ADMIN", "ID", "adm_…", "adm_...")


# ------------------------------------------------------------------------------------ reading
@dataclass
class Block:
    path: Path
    line: int                # the fence's line, from 1
    lang: str
    lines: list[tuple[int, str]]


@dataclass
class Command:
    path: Path
    line: int
    text: str                # the logical line, continuations joined, comment dropped
    comment: str = ""
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@cache
def blocks(path: Path) -> tuple[Block, ...]:
    out, lines = [], path.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start, body = m.group(1), m.group(2).lower(), i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append((i + 1, lines[i]))
            i += 1
        out.append(Block(path, start, lang, body))
        i += 1
    return tuple(out)


def prose(path: Path) -> list[tuple[int, str]]:
    """The lines outside fenced blocks."""
    inside = {n for b in blocks(path) for n in range(b.line, b.line + len(b.lines) + 2)}
    return [(n, t) for n, t in enumerate(path.read_text().split("\n"), 1) if n not in inside]


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment): a `#` that starts a word outside quotes starts the comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def commands(block: Block) -> list[Command]:
    out: list[Command] = []
    pending: Command | None = None
    for n, raw in block.lines:
        if block.lang == "console" and pending is None:
            if not raw.lstrip().startswith("$ "):
                continue                              # output
            raw = raw.lstrip()[2:]
        code, comment = split_comment(raw)
        if pending is None:
            if not code.strip():
                continue
            pending = Command(block.path, n, "", comment)
        elif comment:
            pending.comment = (pending.comment + " " + comment).strip()
        if code.endswith("\\"):
            pending.text += code[:-1] + " "
            continue
        pending.text = (pending.text + code).strip()
        out.append(parse(pending))
        pending = None
    return out


ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def parse(cmd: Command) -> Command:
    try:
        words = shlex.split(cmd.text)
    except ValueError:
        words = cmd.text.split()
    while words and ASSIGN.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        cmd.env[name] = value
    cmd.argv = words
    return cmd


def program(cmd: Command) -> str:
    if not cmd.argv:
        return ""
    first = cmd.argv[0]
    if first.endswith("/aicredits") or first == "aicredits":
        return "aicredits"
    if re.fullmatch(r"(\.venv/bin/)?python3?(\.\d+)?", first):
        if cmd.argv[1:3] == ["-m", "aicredits"]:
            return "aicredits"
        return "python"
    if first == ".":
        return "source"
    return first


def cli_args(cmd: Command) -> list[str]:
    """The arguments after `aicredits`, `.venv/bin/aicredits` or `python -m aicredits`."""
    return cmd.argv[3:] if cmd.argv[1:3] == ["-m", "aicredits"] else cmd.argv[1:]


CURL_BLOCK_PROGRAMS = {"curl", "jq", "aicredits", "echo"}


def segment_programs(text: str) -> list[str]:
    """The programs of a shell line: the first word of each part between ; && || | and $( )."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|()")
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError:
        tokens = text.split()
    out, start = [], True
    for t in tokens:
        if set(t) <= set(";&|()"):
            start = True
        elif start and not ASSIGN.match(t):
            out.append(t.split("/")[-1])
            start = False
    return out


def inline_spans() -> list[tuple[Path, int, str]]:
    out = []
    for path in DOCS:
        for n, text in prose(path):
            for m in re.finditer(r"(?<!`)`([^`\n]+)`(?!`)", text):
                out.append((path, n, m.group(1).replace("\\|", "|")))
    return out


# ------------------------------------------------------------------------------------ the CLI
@cache
def cli_root():
    import typer

    from aicredits.cli.main import app
    return typer.main.get_command(app)


def placeholder(word: str) -> bool:
    return word in ("...", "…") or bool(re.fullmatch(r"[A-Z_]+", word))


def resolve(argv: list[str]):
    """(click command, its path, the remaining args), or raise ValueError."""
    cmd, path, rest = cli_root(), ["aicredits"], list(argv)
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-") and not placeholder(rest[0]):
        sub = cmd.commands.get(rest[0])
        if sub is None:
            raise ValueError(f"`{' '.join(path)}` has no command {rest[0]!r} "
                             f"(it has: {', '.join(sorted(cmd.commands))})")
        cmd, path = sub, [*path, rest.pop(0)]
    return cmd, path, rest


def option_names(cmd) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(getattr(p, "opts", ()))
        names.update(getattr(p, "secondary_opts", ()))
    return names


def check_synopsis(words: list[str]) -> list[str]:
    """An inline `aicredits keys create [--email E] [--rpm N|none]`: the commands and options exist."""
    tokens = [t for w in words for t in re.split(r"[\[\]]", w) if t]
    try:
        cmd, path, rest = resolve(tokens)
    except ValueError as exc:
        return [str(exc)]
    if hasattr(cmd, "commands") and rest and placeholder(rest[0]):
        return []                        # `aicredits ...`, `aicredits COMMAND --help`: any command
    known = option_names(cmd) | option_names(cli_root())
    return [f"`{' '.join(path)}` has no option {opt}" for t in rest if t.startswith("-")
            for opt in [t.split("=")[0].split("|")[0]] if opt not in known and opt not in ("-", "--")]


# ------------------------------------------------------------------------------------ make
@cache
def makefile() -> tuple[set[str], str]:
    text = (ROOT / "Makefile").read_text()
    targets = {t for line in text.splitlines() for t in re.findall(r"^([\w-][\w.-]*)\s*:(?!=)", line)}
    return targets, text


def check_make(cmd: Command) -> list[str]:
    targets, text = makefile()
    problems = []
    for word in cmd.argv[1:]:
        if ASSIGN.match(word):
            var = word.split("=")[0]
            if not re.search(rf"\$\({var}\)|^{var}\s*[?:]?=", text, re.MULTILINE):
                problems.append(f"the Makefile uses no variable {var}")
        elif not word.startswith("-") and word not in targets:
            problems.append(f"the Makefile has no target {word!r} (it has: {', '.join(sorted(targets))})")
    return problems


# ------------------------------------------------------------------------------------ the rest
@cache
def script_help(script: str) -> str:
    proc = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    return proc.stdout + proc.stderr if proc.returncode == 0 else ""


def check_python(cmd: Command) -> list[str]:
    args = cmd.argv[1:]
    if not args or args[0].startswith("-"):
        return []                                   # `python -c`, `python -m x`: nothing to check
    script = args[0]
    if not (ROOT / script).is_file():
        reason = OTHER_PROGRAMS.get(f"python3 {script}")
        return [] if reason else [f"no file {script} in the repository"]
    help_text = script_help(script)
    if not help_text:
        return [f"`python {script} --help` failed"]
    return [f"`{script}` has no option {a}" for a in args[1:]
            if a.startswith("--") and a.split("=")[0] not in help_text]


@cache
def extras() -> set[str]:
    import tomllib
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def check_other(cmd: Command) -> list[str]:
    prog = program(cmd)
    if prog == "make":
        return check_make(cmd)
    if prog == "python":
        return check_python(cmd)
    if prog == "aicredits":
        return check_synopsis(cli_args(cmd))
    if prog == "source":
        return [] if cmd.argv[1:] == [".venv/bin/activate"] else [f"unexpected source {cmd.argv[1:]}"]
    if prog == "pip":
        bad = [e for a in cmd.argv for e in re.findall(r"^aicredits\[([\w,-]+)\]$", a) for e in e.split(",")
               if e not in extras()]
        return [f"pyproject.toml has no extra {e!r}" for e in bad]
    if prog in SUBCOMMANDS:
        sub = next((a for a in cmd.argv[1:] if not a.startswith("-")), "")
        if sub not in SUBCOMMANDS[prog]:
            return [f"{prog} {sub!r}: not a {prog} subcommand this check knows (SUBCOMMANDS in tests/test_docs.py)"]
    if prog in OTHER_PROGRAMS or f"{prog} {(cmd.argv[1:2] or [''])[0]}" in OTHER_PROGRAMS:
        return []
    if not prog:
        return []                                   # only variable assignments
    return [(f"unknown program {prog!r}: run it in tests/test_docs.py, or add it to OTHER_PROGRAMS with "
             "the reason it is not run")]


def uses_curl(block: Block) -> bool:
    return any(re.search(r"(^|[\s$(|;])curl\s", t) for _, t in block.lines)


# ==================================================================================== the checks
def test_every_shell_command_is_known():
    """Every command line of a shell block names a program this check knows: make targets and
    variables exist, scripts and their options exist, CLI commands and options exist."""
    problems = []
    for path in DOCS:
        for b in blocks(path):
            if b.lang in SHELL and not uses_curl(b):
                for c in commands(b):
                    problems += [f"{c.where}: {c.text}\n    {p}" for p in check_other(c)]
            elif b.lang in SHELL:
                for c in commands(b):
                    if set(segment_programs(c.text)) - CURL_BLOCK_PROGRAMS:
                        problems.append(f"{c.where}: {c.text}\n    a curl block runs only curl, jq, aicredits "
                                        "and shell variables; move this command to its own block")
    assert not problems, "stale commands in the docs:\n" + "\n".join(problems)


KNOWN_START = re.compile(r"^\s*(\$ )?([A-Z_]+=\S+\s+)*(aicredits|\.venv/bin/\w+|curl|make|docker|psql|"
                         r"createdb|systemctl|pip|python3?|sqlite3|pg_dump|pg_restore|bash)\b")


def test_commands_are_in_tagged_blocks():
    """A command in a fence without a language is not checked: it must be tagged sh."""
    problems = [f"{b.path.relative_to(ROOT)}:{b.line}: a fence with commands has no language; tag it ```sh"
                for p in DOCS for b in blocks(p)
                if not b.lang and any(KNOWN_START.match(t) for _, t in b.lines)]
    assert not problems, "\n".join(problems)


def looks_like_cli(argv: list[str]) -> bool:
    """`keys list --json`, `serve --workers N`: a top-level command, then one of its commands or an option."""
    if len(argv) < 2 or argv[0] not in cli_root().commands:
        return False
    cmd = cli_root().commands[argv[0]]
    return argv[1].startswith("--") or argv[1] in getattr(cmd, "commands", {})


def test_inline_commands_exist():
    """`aicredits ...`, `make ...` and `.venv/bin/aicredits ...` in the prose name real commands,
    options, targets and variables; so does a code span that starts with a CLI command name."""
    problems = []
    for path, n, span in inline_spans():
        cmd = parse(Command(path, n, span))
        prog = program(cmd)
        if prog in ("aicredits", "make"):
            problems += [f"{cmd.where}: `{span}`\n    {p}" for p in check_other(cmd)]
        elif looks_like_cli(cmd.argv) and not cmd.env:
            problems += [f"{cmd.where}: `{span}`\n    {p}" for p in check_synopsis(cmd.argv)]
    assert not problems, "stale commands in the docs:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------ running the CLI
def invoke(args: list[str], env: dict[str, str]):
    from typer.testing import CliRunner

    from aicredits.cli.main import app
    from tests.cli.invoke import built_once
    with built_once():
        return CliRunner().invoke(app, args, env=env, catch_exceptions=True)


def expected_status(comment: str) -> int:
    m = re.search(r"\bexits?(?: with)?(?: status| code)? (\d+)", comment)
    return int(m.group(1)) if m else 0


def test_cli_commands_in_the_docs_run(tmp_path, monkeypatch):
    """Every `aicredits` line of a shell block (not a curl block), in the order of the docs,
    against a fresh database with an account, a key, an admin and an admin key."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("AICREDITS_") and not n.startswith("AICREDITS_TEST_")]:
        monkeypatch.delenv(name)
    db = f"sqlite:///{tmp_path}/docs.db"
    env = {"AICREDITS_DATABASE_URL": db}

    def ok(args):
        result = invoke(args, env)
        assert result.exit_code == 0, f"fixture `aicredits {' '.join(args)}` failed:\n{result.output}"
        return result.output

    ok(["migrate"])
    key = json.loads(ok(["keys", "create", "--email", "dev@example.com", "--credits", "100", "--json"]))
    ok(["users", "create", "--email", "docs-admin@example.com", "--admin", "--password", "docs-password-1"])
    admin_key = json.loads(ok(["admin-keys", "create", "--email", "docs-admin@example.com", "--json"]))
    values = {"KEY_ID": key["id"], "E": "dev@example.com", "EMAIL": "dev@example.com",
              "ADMIN": "docs-admin@example.com", "ID": admin_key["id"], "adm_…": admin_key["id"],
              "adm_...": admin_key["id"]}
    assert set(values) == set(PLACEHOLDERS)

    ran, problems = 0, []
    cli = [c for p in DOCS for b in blocks(p) if b.lang in SHELL and not uses_curl(b)
           for c in commands(b) if program(c) == "aicredits"]
    for c in cli:
        args = cli_args(c)
        problem = check_synopsis(args)
        if problem:
            problems += [f"{c.where}: {c.text}\n    {p}" for p in problem]
            continue
        cmd, path, _ = resolve(args)
        if path[1:] == ["serve"] and "--help" not in args:
            try:
                cmd.make_context("serve", args[1:])      # parsed, not started
            except Exception as exc:  # noqa: BLE001 - a click usage error, reported
                problems.append(f"{c.where}: {c.text}\n    {exc}")
            continue
        args = [values.get(a, a) for a in args]
        run_env = {**env, **{k: v for k, v in c.env.items() if k != "AICREDITS_DATABASE_URL"}}
        result = invoke(args, run_env)
        ran += 1
        want = expected_status(c.comment)
        if result.exit_code != want:
            problems.append(f"{c.where}: {c.text}\n    exit {result.exit_code}, the doc expects {want}:\n"
                            + textwrap.indent(result.output.strip() or repr(result.exception), "      "))
    assert not problems, "CLI commands in the docs that no longer work:\n" + "\n".join(problems)
    assert ran >= 5, f"only {ran} CLI commands found in the docs"


# ------------------------------------------------------------------------------------ the live gateway
@pytest.fixture
def live(serve_gateway):
    """A fresh gateway (each test its own: the docs' examples create the same accounts), served
    from a thread of this process (the examples are its HTTP clients; their CLI commands are
    processes of their own), with the first admin `serve` creates on an empty database (its
    routine, cli/serve.py _prepare): its key and an admin API key."""
    from aicredits.cli.serve import _prepare
    from aicredits.settings import load_settings
    from tests.conftest import run_async

    gw = serve_gateway()
    first = run_async(lambda: _prepare(load_settings(gw.env), None))
    key, email = first["key"], first["email"]
    result = invoke(["admin-keys", "create", "--email", email, "--json"], {"AICREDITS_DATABASE_URL": gw.db_url})
    assert result.exit_code == 0, result.output
    return gw, key, json.loads(result.output)["key"]


def _localize(text: str, base_url: str) -> str:
    return re.sub(r"http://(127\.0\.0\.1|localhost):8000", base_url, text)


def test_curl_blocks_in_the_docs_run(live, tmp_path):
    """Every shell block with curl runs with bash against a live gateway; an error status fails."""
    gw, key, admin_key = live
    provided = {"KEY": key, "ADMIN_KEY": admin_key}
    assert shutil.which("curl") and shutil.which("jq"), "the docs check needs curl and jq"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aicredits").symlink_to(Path(sys.executable).parent / "aicredits")
    env = {**os.environ, **provided, "AICREDITS_DATABASE_URL": gw.db_url,
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env = {k: v for k, v in env.items() if not (k.startswith("AICREDITS_") and k not in
                                                ("AICREDITS_DATABASE_URL",))}
    problems, ran = [], 0
    for path in DOCS:
        for b in blocks(path):
            if b.lang not in SHELL or not uses_curl(b):
                continue
            where = f"{path.relative_to(ROOT)}:{b.line}"
            script = ["set -Eeo pipefail",
                      'curl() { command curl --fail-with-body --silent --show-error --max-time 30 "$@"; }',
                      f"trap 'echo \"docs check: the command at {path.relative_to(ROOT)}:$DOCLINE failed\" >&2' ERR"]
            for c in commands(b):
                if set(c.env) & set(provided) and not c.argv and re.search(r"\.\.\.|…", c.text):
                    continue                          # KEY=sk-... : the check provides it
                script += [f"DOCLINE={c.line}", _localize(c.text, gw.base_url)]
            proc = subprocess.run(["bash", "-c", "\n".join(script)], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=90, check=False)
            ran += 1
            if proc.returncode != 0:
                problems.append(f"{where}: the block failed (exit {proc.returncode}):\n"
                                + textwrap.indent((proc.stdout[-1500:] + proc.stderr[-1500:]).strip(), "      "))
    assert not problems, "curl commands in the docs that no longer work:\n" + "\n".join(problems)
    assert ran >= 2


def test_python_examples_in_the_docs_run(live, tmp_path):
    """Python blocks compile; those that call 127.0.0.1:8000 run against the live gateway with a
    key in place of "sk-..." and ADMIN_KEY defined."""
    gw, key, admin_key = live
    problems, ran = [], 0
    for path in DOCS:
        for b in blocks(path):
            if b.lang != "python":
                continue
            where = f"{path.relative_to(ROOT)}:{b.line}"
            source = textwrap.dedent("\n".join(t for _, t in b.lines))
            try:
                compile(source, where, "exec")
            except SyntaxError as exc:
                problems.append(f"{where}: does not compile: {exc}")
                continue
            if not re.search(r"(127\.0\.0\.1|localhost):8000", source):
                continue
            source = _localize(source, gw.base_url).replace('"sk-..."', repr(key))
            source = f"ADMIN_KEY = {admin_key!r}\n" + source
            proc = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=90, check=False)
            ran += 1
            if proc.returncode != 0:
                problems.append(f"{where}: exit {proc.returncode}:\n"
                                + textwrap.indent(proc.stderr[-2000:].strip(), "      "))
    assert not problems, "python examples in the docs that no longer work:\n" + "\n".join(problems)
    assert ran >= 1


# ------------------------------------------------------------------------------------ links and settings
def test_relative_links_point_at_files():
    problems = []
    for path in DOCS:
        for n, text in prose(path):
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"[a-z]+:", target) or target.startswith("#"):
                    continue
                file = target.split("#")[0]
                if file and not (path.parent / file).exists():
                    problems.append(f"{path.relative_to(ROOT)}:{n}: link to {target}: no such file")
            for target in re.findall(r"`((?:docs|src|tests|bench|deploy)/[\w./-]+?)`", text):
                if not (ROOT / target).exists() and "<" not in target and "*" not in target:
                    problems.append(f"{path.relative_to(ROOT)}:{n}: `{target}`: no such file")
    assert not problems, "\n".join(problems)


# AICREDITS_* names the docs show as examples of what is refused
NOT_SETTINGS = {
    "AICREDITS_UPSTREAM_TIMEOUTS": "docs/configuration.md: the example of a misspelt variable",
    "AICREDITS_API_KEY": "docs/configuration.md: the example of a client's variable the gateway refuses",
}


def _settings_names() -> tuple[set[str], set[str]]:
    from aicredits.settings import CACHE_ENV, CONFIG_ENV, ENV_NAMES, TOOL_ENV
    return {*ENV_NAMES, CONFIG_ENV, *CACHE_ENV}, set(TOOL_ENV)


def test_every_variable_the_docs_name_is_a_setting():
    settings, tools = _settings_names()
    problems = []
    for path in DOCS:
        for n, text in enumerate(path.read_text().split("\n"), 1):
            for m in re.finditer(r"\bAICREDITS_[A-Z0-9_]*[A-Z0-9](_?\*)?", text):
                name = m.group(0)
                if name.endswith("*"):
                    prefix = name.rstrip("*")
                    ok = any(s.startswith(prefix) for s in settings)
                else:
                    ok = name in settings or name in tools or name in NOT_SETTINGS
                if not ok:
                    problems.append(f"{path.relative_to(ROOT)}:{n}: {name} is not a setting "
                                    "(src/aicredits/settings/)")
    assert not problems, "\n".join(problems)


def test_every_setting_is_documented():
    settings, _ = _settings_names()
    text = "\n".join(p.read_text() for p in DOCS if p.parent.name == "docs")
    missing = sorted(s for s in settings if not re.search(rf"\b{s}\b", text))
    assert not missing, f"settings not described in docs/: {', '.join(missing)}"


def test_toml_examples_load(tmp_path):
    """Every toml block is a configuration file the gateway accepts (AICREDITS_CONFIG)."""
    from aicredits.settings import load_settings

    problems = []
    for path in DOCS:
        for b in blocks(path):
            if b.lang != "toml":
                continue
            file = tmp_path / f"{path.stem}-{b.line}.toml"
            file.write_text("\n".join(t for _, t in b.lines) + "\n")
            try:
                load_settings({"AICREDITS_CONFIG": str(file)})
            except ValueError as exc:
                problems.append(f"{path.relative_to(ROOT)}:{b.line}: the gateway refuses it: {exc}")
    assert not problems, "\n".join(problems)


def test_every_cli_command_and_option_is_in_docs_cli():
    """docs/cli.md names every command of `aicredits --help`, and each option on its command's line
    (an option most commands take, such as --json, once anywhere)."""
    lines = (ROOT / "docs" / "cli.md").read_text().split("\n")

    def leaves(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from leaves(sub, [*path, name])
        else:
            yield " ".join(path), cmd

    def options(cmd):
        return {o for p in cmd.params for o in getattr(p, "opts", ()) if o.startswith("--")}

    commands_ = list(leaves(cli_root(), []))
    counts = Counter(o for _, c in commands_ for o in options(c))
    common = {o for o, n in counts.items() if n > len(commands_) / 2}    # e.g. a --database most commands take
    problems = [f"`{o}` (an option of most commands) is not in docs/cli.md" for o in sorted(common)
                if not any(o in t for t in lines)]
    for path, cmd in commands_:
        rows = [t for t in lines if re.search(rf"`(aicredits )?{re.escape(path)}(`| )", t)]
        if not rows:
            problems.append(f"`aicredits {path}` is not in docs/cli.md")
            continue
        problems += [f"`aicredits {path} {o}` is not in docs/cli.md" for o in sorted(options(cmd) - common)
                     if not any(o in t for t in rows)]
    assert not problems, "\n".join(problems)


def _doc_paths(path: Path) -> set[str]:
    """The URL paths a doc names in code spans (`GET /v1/models`, `/admin/api/users/{id}/ledger?kind=`)."""
    out = set()
    for span in re.findall(r"`([^`\n]+)`", path.read_text()):
        for p in re.findall(r"(?:^|\s)(/[\w./{}…-]*)", span):
            out.add(_norm(p))
    return out


def _norm(p: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", p).removesuffix("…").rstrip("/") or "/"


def test_every_route_is_documented():
    """Every route of the OpenAPI document (one operation per route) is in README.md's "What works
    today" and docs/api.md; every admin API route in docs/admin-api.md."""
    from aicredits.api.openapi import build

    readme, api, admin = (_doc_paths(ROOT / f) for f in ("README.md", "docs/api.md", "docs/admin-api.md"))
    problems = []
    for route in build()["paths"]:
        p = _norm(route)
        where = [("docs/admin-api.md", admin)] if p.startswith("/admin/api") else \
                [("README.md", readme), ("docs/api.md", api)]
        problems += [f"{route} is not in {name}" for name, paths in where if p not in paths]
    assert not problems, "\n".join(problems)


def test_the_reader_splits_commands_as_a_shell_does():
    """The reader itself: console prompts and output, continuations, comments, env prefixes."""
    lines = ["$ AICREDITS_LOG_LEVEL=debug aicredits keys list \\", "    --json   # all keys", "[]",
             "$ aicredits wallet grant 5 --email 'a b#c@x.in'  # exits 1", "error: ..."]
    block = Block(ROOT / "README.md", 1, "console", list(enumerate(lines, 2)))
    first, second = commands(block)
    assert (first.line, first.argv, first.env, first.comment) == (
        2, ["aicredits", "keys", "list", "--json"], {"AICREDITS_LOG_LEVEL": "debug"}, "all keys")
    assert second.argv[-1] == "a b#c@x.in" and expected_status(second.comment) == 1
    assert segment_programs('A="x; y"; uid=$(curl -s "$B" | jq .id)') == ["curl", "jq"]
    problems = check_make(parse(Command(ROOT, 1, "make rnu NOPE=1 run")))
    assert len(problems) == 2 and "no target 'rnu'" in problems[0] and "no variable NOPE" in problems[1]
    assert check_synopsis(["keys", "create", "[--emial", "E]"]) == ["`aicredits keys create` has no option --emial"]


def test_readme_links_every_doc():
    """README.md is the front door: it links every file of docs/."""
    text = (ROOT / "README.md").read_text()
    missing = [p.name for p in DOCS if p.parent.name == "docs" and f"](docs/{p.name})" not in text]
    assert not missing, f"README.md links no docs/{', docs/'.join(missing)}"
