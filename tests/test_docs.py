"""Every code block in README.md and docs/*.md runs, or is checked, as written.

The rule, by the fence's language (blocks are found afresh at each run, so a block
added to any of those files is tested with no change here):

- ``python``: run as a script in a fresh interpreter, from an empty folder that holds a
  link to the repository's ``examples/``, with this checkout's ``src`` on the path,
  network models blocked (``block_network_models``) and every socket to a host other
  than loopback refused, so nothing is downloaded. The block is written to a file named
  after the doc, padded so that its line numbers are the doc's: a traceback names the
  doc's file and line. The embedded model (a file in a package) may be used.
- ``toml`` / ``yaml``: parsed, then validated by the schema its top-level keys name: a
  run config (``[env]``, ``[agent...]``, ...; a fragment is merged into a minimal
  config) is validated and, when complete, built (modules and parameters checked by
  their factories); a gateway config (``[gateway]``, ``[[services]]``, ...) by
  ``load_gateway_config``; a deployment (``name`` + ``[[services]]`` with ``config``)
  by ``load_deploy_config``. Any other shape fails: say what it is, or mark it.
- ``json``: parsed.
- ``bash`` / ``sh`` / ``shell``: ``bash -n`` (syntax), then each command is checked, not
  run (they install packages and start servers): ``llmagentos ...`` must name commands
  and options the CLI has; ``python FILE`` / ``bash FILE`` files exist, ``python -m
  MODULE`` imports, ``bench/run.py --only NAME`` names a benchmark, ``pip install
  ".[extra]"`` names extras ``pyproject.toml`` has; paths under ``examples/``,
  ``scripts/``, ``bench/``, ``docs/``, ``src/``, ``tests/`` exist. ``console`` blocks:
  the same for their ``$ `` lines. In any other block, and in inline code spans, lines
  that start with ``llmagentos `` or ``python `` get the same command checks.
- Anything else (``text``, no language: diagrams, output) is prose, except that an
  unlabelled block that parses as Python with an import must be labelled.

A block that cannot run here (it needs an API key, a server, or serves forever) starts
with the line ``# docs-test: skip (the reason)``; it is still compiled (Python) or
checked (commands), and the test reports it as skipped with its reason.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"^#\s*docs-test:\s*skip\s*\((?P<reason>[^)]{8,})\)\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)[^`]*$")
REPO_PATH = re.compile(r"^(?:examples|scripts|bench|docs|src|tests)/[\w./*-]*$")
PYTHON_TIMEOUT = 240  # seconds per block: the slowest trains Taxi or loads the model


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced block: where it is, its language and its text (indentation removed)."""

    doc: Path
    line: int  # the line number of the block's first line of code (after the fence)
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        match = SKIP.match(first.strip())
        return match["reason"] if match else None


def blocks_of(doc: Path) -> Iterator[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        # A fence indented in a list: its lines lose that indentation, and no more.
        body = [_dedent(line, indent) for line in lines[index + 1 : end]]
        yield Block(doc, index + 2, opening["lang"].lower(), "\n".join(body) + "\n")
        index = end + 1


def _dedent(line: str, indent: int) -> str:
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent) :]


def inline_spans(doc: Path) -> Iterator[tuple[int, str]]:
    """Inline code spans outside fences, with their line numbers."""
    inside = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            inside = not inside
            continue
        if not inside:
            for span in re.findall(r"`([^`\n]+)`", line):
                yield number, span


ALL_BLOCKS = [block for doc in DOCS for block in blocks_of(doc)]


def _ids(kind: set[str]) -> list[Any]:
    return [pytest.param(b, id=b.where) for b in ALL_BLOCKS if b.lang in kind]


# -- Python ---------------------------------------------------------------------------------

RUNNER = r"""
import runpy, socket, sys

from llmagentos.llm.testing import block_network_models

block_network_models()


def _local(host):
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in ("localhost", "::1", "") or host.startswith("127.")


_getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local(host):
        raise OSError(f"docs test: no network (resolving {host!r})")
    return _getaddrinfo(host, *args, **kwargs)


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        raise OSError(f"docs test: no network (connecting to {address[0]!r})")
    return _connect(self, address)


socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _padded(block: Block) -> str:
    # Blank lines before the code put each line at its line number in the doc.
    return "\n" * (block.line - 1) + block.text


@pytest.mark.parametrize("block", _ids({"python", "py", "python3"}))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    source = _padded(block)
    try:
        compile(source, block.where, "exec")
    except SyntaxError as err:
        pytest.fail(f"{block.where}: not valid Python as written: {err}")
    if (reason := block.skip_reason) is not None:
        pytest.skip(f"{block.where}: {reason}")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    script = tmp_path / block.doc.relative_to(ROOT)
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env |= {"PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER, str(script)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=PYTHON_TIMEOUT,
            check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {PYTHON_TIMEOUT} s")
    assert done.returncode == 0, (
        f"{block.where}: exit status {done.returncode}\n{done.stderr[-3000:]}"
    )


# -- configs --------------------------------------------------------------------------------


def _run_config_fields() -> set[str]:
    from llmagentos.config import RunConfig

    return set(RunConfig.model_fields)


def _check_config(block: Block, data: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmagentos.exceptions import LLMAgentOSError

    if not isinstance(data, dict) or not data:
        pytest.fail(f"{block.where}: a config block must be a non-empty table")
    keys = set(data)
    try:
        if keys <= _run_config_fields():
            _check_run_config(data)
        elif "services" in keys and (
            "name" in keys or any("config" in s for s in data.get("services", []))
        ):
            from llmagentos.deploy.config import load_deploy_config

            load_deploy_config(_as_file(data, block, tmp_path))
        elif keys <= {"gateway", "services", "models", "agents", "embedders"}:
            from llmagentos.gateway.config import load_gateway_config

            for name in re.findall(r'secret_env\s*=\s*"([^"]+)"', block.text):
                monkeypatch.setenv(name, "docs-test-secret-that-is-long-enough-0123456789")
            monkeypatch.chdir(tmp_path)
            load_gateway_config(_as_file(data, block, tmp_path))
        else:
            pytest.fail(
                f"{block.where}: top-level keys {sorted(keys)} match no config schema "
                "(run, gateway, deployment): fix it, or mark it # docs-test: skip (why)"
            )
    except LLMAgentOSError as err:
        pytest.fail(f"{block.where}: {type(err).__name__}: {err}")


def _as_file(data: dict[str, Any], block: Block, tmp_path: Path) -> Path:
    # The deployment's relative paths (../configs/...) resolve as from examples/deploy/.
    for name in ("configs", "deploy"):
        link = tmp_path / name
        if not link.exists():
            link.symlink_to(ROOT / "examples" / name)
    folder = tmp_path / "block"
    folder.mkdir(exist_ok=True)
    path = folder / "config.toml"
    if block.lang == "toml":
        path.write_text(block.text, encoding="utf-8")
    else:
        pytest.fail(f"{block.where}: gateway and deployment configs are TOML only")
    return path


def _check_run_config(data: dict[str, Any]) -> None:
    from llmagentos.build import build_agent
    from llmagentos.config import parse_config
    from llmagentos.kernel.default import reset_kernel

    if "env" not in data:  # a fragment: checked inside a minimal config
        parse_config({"env": {"id": "CartPole-v1"}} | data)
        return
    config = parse_config(data)
    try:
        build_agent(config).agent.close()  # every module name and parameter, checked
    finally:
        reset_kernel()


@pytest.mark.parametrize("block", _ids({"toml", "yaml", "yml"}))
def test_config_block_is_valid(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        data = tomllib.loads(block.text) if block.lang == "toml" else yaml.safe_load(block.text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        pytest.fail(f"{block.where}: invalid {block.lang}: {err}")
    if (reason := block.skip_reason) is not None:
        pytest.skip(f"{block.where}: {reason}")
    _check_config(block, data, tmp_path, monkeypatch)


@pytest.mark.parametrize("block", _ids({"json"}))
def test_json_block_parses(block: Block) -> None:
    try:
        value = json.loads(block.text)
    except json.JSONDecodeError as err:
        pytest.fail(f"{block.where}: invalid JSON: {err}")
    assert value is not None or block.text.strip() == "null", f"{block.where}: empty JSON"


# -- commands -------------------------------------------------------------------------------


def _cli() -> Any:
    import typer

    from llmagentos.cli.main import app

    return typer.main.get_command(app)


def _options(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            names.update(param.opts, param.secondary_opts)
    return names


def _benchmarks() -> set[str]:
    names = set()
    for path in (ROOT / "bench").glob("bench_*.py"):
        names.update(re.findall(r'^NAME = "([^"]+)"', path.read_text(), re.MULTILINE))
    return names


def _extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


def _segments(line: str) -> Iterator[list[str]]:
    """The simple commands of one line, as argument lists (placeholders kept)."""
    line = re.sub(r"<[^<>]*>", "PLACEHOLDER", line)  # <key id>
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    current: list[str] = []
    try:
        tokens = list(lexer)
    except ValueError as err:
        raise AssertionError(f"cannot split {line!r}: {err}") from err
    for token in tokens:
        if token in {"|", "||", "&&", ";", "&"}:
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


def _check_llmagentos(args: list[str]) -> list[str]:
    """Problems with ``llmagentos ARGS``: unknown commands or options."""
    problems: list[str] = []
    nodes = [_cli()]
    path = "llmagentos"
    rest = iter(args)
    for raw in rest:
        token = raw.strip("[]")
        if token == "--":
            break
        if token in {"...", "…"}:
            continue
        if token.startswith("-") and len(token) > 1 and not token[1].isdigit():
            name = token.split("=", 1)[0]
            if not any(name in _options(node) for node in nodes):
                problems.append(f"{path} has no option {name}")
            continue
        groups = [node for node in nodes if hasattr(node, "commands")]
        if not groups:
            continue  # an argument of a command
        choices = token.split("|")
        found = [group.commands.get(choice) for group in groups for choice in choices]
        if not all(found):
            problems.append(f"{path} has no command {token!r}")
            break
        nodes, path = [node for node in found if node is not None], f"{path} {token}"
    return problems


def _check_command(args: list[str]) -> list[str]:
    """Problems with one simple command (one with no program we know passes)."""
    problems = [f"no such file: {arg}" for arg in args
                if REPO_PATH.match(arg) and not list(ROOT.glob(arg))]  # fmt: skip
    if not args:
        return problems
    program, *rest = args
    if program == "llmagentos":
        return problems + _check_llmagentos(rest)
    if program in {"python", "python3"} and rest:
        if rest[0] == "-m" and len(rest) > 1:
            if rest[1] == "llmagentos":
                return problems + _check_llmagentos(rest[2:])
            if rest[1] not in {"pytest", "pip"} and find_spec(rest[1]) is None:
                problems.append(f"no module {rest[1]}")
        elif not rest[0].startswith("-") and not (ROOT / rest[0]).is_file():
            problems.append(f"no such file: {rest[0]}")
        if rest[0] == "bench/run.py":
            for flag, value in itertools.pairwise(rest):
                if flag == "--only" and value not in _benchmarks():
                    problems.append(f"bench/run.py has no benchmark {value!r}")
    if program == "bash" and rest and not (ROOT / rest[0]).is_file():
        problems.append(f"no such file: {rest[0]}")
    if program == "pip" and "install" in rest:
        for arg in rest:
            extras = re.fullmatch(r"(?:\.|llmagentos)\[([\w,-]+)\]", arg)
            if extras:
                missing = [extra for extra in extras[1].split(",") if extra not in _extras()]
                problems += [f"pyproject.toml has no extra {extra!r}" for extra in missing]
    return problems


def _command_lines(block: Block) -> Iterator[str]:
    """The lines of a block that are commands (continuations joined)."""
    joined: list[str] = []
    for raw in block.text.splitlines():
        line = raw.strip()
        if block.lang == "console":
            if not line.startswith("$ ") and not joined:
                continue
            line = line.removeprefix("$ ")
        elif (
            block.lang not in {"bash", "sh", "shell"}
            and not joined
            and not line.startswith(("llmagentos ", "python "))
        ):
            continue
        joined.append(line.removesuffix("\\"))
        if not line.endswith("\\"):
            yield " ".join(joined)
            joined = []
    if joined:
        yield " ".join(joined)


COMMAND_LANGS = {"bash", "sh", "shell", "console", "text", ""}


@pytest.mark.parametrize("block", _ids(COMMAND_LANGS))
def test_commands_in_block_exist(block: Block) -> None:
    if block.lang in {"bash", "sh", "shell"}:
        syntax = subprocess.run(
            ["bash", "-n"], input=block.text, capture_output=True, text=True, check=False
        )
        assert syntax.returncode == 0, f"{block.where}: bash syntax: {syntax.stderr}"
    problems = [
        f"{block.where}: {line!r}: {problem}"
        for line in _command_lines(block)
        for args in _segments(line)
        for problem in _check_command(args)
    ]
    assert not problems, "\n".join(problems)
    if block.lang == "":
        try:
            tree = ast.parse(block.text)
        except SyntaxError:
            return
        imports = any(isinstance(node, ast.Import | ast.ImportFrom) for node in ast.walk(tree))
        assert not imports, f"{block.where}: Python in an unlabelled block: label it ```python"


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_commands_in_prose_exist(doc: Path) -> None:
    problems = [
        f"{doc.relative_to(ROOT)}:{number}: `{span}`: {problem}"
        for number, span in inline_spans(doc)
        if span.startswith(("llmagentos ", "python "))
        for args in _segments(span)
        for problem in _check_command(args)
    ]
    assert not problems, "\n".join(problems)


# -- the checks check -----------------------------------------------------------------------


def test_the_command_checks_catch_drift() -> None:
    assert _check_command(["llmagentos", "run", "x.toml", "--durable"]) == []
    assert _check_command(["llmagentos", "runs", "list|show|approve", "RUN"]) == []
    assert _check_command(["llmagentos", "run", "x.toml", "--no-such"]) == [
        "llmagentos run has no option --no-such"
    ]
    assert _check_command(["llmagentos", "walk"]) == ["llmagentos has no command 'walk'"]
    assert _check_command(["llmagentos", "runs", "list|explode"]) == [
        "llmagentos runs has no command 'list|explode'"
    ]
    assert _check_command(["python", "bench/run.py", "--only", "nope"]) == [
        "bench/run.py has no benchmark 'nope'"
    ]
    assert _check_command(["python", "examples/nope.py"]) == [
        "no such file: examples/nope.py",
        "no such file: examples/nope.py",
    ]
    assert _check_command(["pip", "install", "-e", ".[local,nope]"]) == [
        "pyproject.toml has no extra 'nope'"
    ]
    assert list(_segments("llmagentos up D.toml | status NAME  # c")) == [
        ["llmagentos", "up", "D.toml"],
        ["status", "NAME"],
    ]


def test_blocks_are_found_with_their_lines(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```python\nx = 1\n```\n\n  ~~~toml\n  a = 1\n  ~~~\n")
    found = list(blocks_of(doc))
    assert [(b.line, b.lang, b.text) for b in found] == [
        (4, "python", "x = 1\n"),
        (8, "toml", "a = 1\n"),
    ]
    marked = Block(doc, 1, "python", "# docs-test: skip (needs a server at :8080)\nx\n")
    assert marked.skip_reason == "needs a server at :8080"
    assert Block(doc, 1, "python", "# docs-test: skip\nx\n").skip_reason is None  # no reason


def test_a_failing_block_names_its_doc_and_line(tmp_path: Path) -> None:
    doc = ROOT / "README.md"  # any doc path: the block's text is ours
    block = Block(doc, 7, "python", "x = 1\nraise SystemExit(undefined_name)\n")
    with pytest.raises(AssertionError, match=r"(?s)README\.md:7: exit status 1.*"
                       r'File ".*README\.md", line 8.*NameError'):  # fmt: skip
        test_python_block_runs(block, tmp_path)
    network = Block(doc, 1, "python", "import socket\nsocket.create_connection(('1.1.1.1', 80))\n")
    (tmp_path / "n").mkdir()
    with pytest.raises(AssertionError, match="docs test: no network"):
        test_python_block_runs(network, tmp_path / "n")
