"""A `nonecap-mcp` command run in this process, as its console script runs it in its own.

A console-script process costs over a second of CPU (interpreter, then the MCP SDK, eth-account,
keyring at their first use), which the test process has already paid. Where a test is about what
a command does, it calls `cli.main(argv)` here with what the process would have had: exactly the
given environment (nothing of this process's), the given stdin, its own stdout and stderr (in a
given encoding, as PYTHONIOENCODING sets them), a working directory, and a keyring backend detected
afresh from that environment. Where the process boundary itself is the promise (exit status as a
host sees it, stdout purity, secrets only on stdin, what a fresh interpreter imports), the tests
still start the console script.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from conftest import CAPTURED

from nonecap_mcp import keystore
from nonecap_mcp.cli import main


@dataclass(frozen=True)
class Ran:
    """What a finished command left: its exit status and output (like `subprocess.CompletedProcess`)."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def environment(env: Mapping[str, str], cwd: Path | None = None) -> Iterator[None]:
    """This process with exactly `env` as its environment (and `cwd` as its working directory),
    and a keyring backend detected again from it, as a fresh process would; all restored after."""
    saved, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    keystore.set_backend(None)  # detect from this env (PYTHON_KEYRING_BACKEND), not a cached backend
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved)
        keystore.set_backend(None)


def _stream(encoding: str, errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    return stream.buffer.getvalue().decode(stream.encoding)  # type: ignore[attr-defined]


def run_main(argv: Sequence[str], env: Mapping[str, str], *, stdin: str = "", cwd: Path | None = None,
             encoding: str = "utf-8") -> Ran:
    """`nonecap-mcp *argv` in this process; its output also goes to the leak check (conftest)."""
    out, err = _stream(encoding, "strict"), _stream(encoding, "backslashreplace")  # as Python sets up its own
    with environment(env, cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        saved_stdin, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse: --help, --version, a usage error
            code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
        finally:
            sys.stdin = saved_stdin
    ran = Ran(code, _text(out), _text(err))
    CAPTURED.extend([ran.stdout, ran.stderr])
    return ran
