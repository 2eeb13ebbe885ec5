"""Terminal I/O shared by the CLI commands that handle secrets (``auth``, ``wallet``).

One implementation of "read a secret" so every command behaves the same way: no echo
on a terminal, one line from a pipe for scripts (never a command-line argument, which
``ps`` and shell history would see), and the same ``Error:``/``Note:`` lines on stderr.
"""

from __future__ import annotations

import getpass
from typing import TextIO

__all__ = ["error", "note", "read_secret_line"]


def error(stderr: TextIO, message: str) -> None:
    """One ``Error:`` line on stderr."""
    print(f"Error: {message}", file=stderr)


def note(stderr: TextIO, message: str) -> None:
    """One ``Note:`` line on stderr."""
    print(f"Note: {message}", file=stderr)


def read_secret_line(prompt: str, *, from_stdin: bool, stdin: TextIO, stderr: TextIO) -> str | None:
    """Read a secret: a hidden prompt (on stderr) when stdin is a terminal,
    else one line of ``stdin``; ``from_stdin`` forces the latter.

    Returns the raw text (``""`` at end of input) for the caller to validate,
    or ``None`` after telling the user that Ctrl-C cancelled and nothing was stored.
    """
    try:
        return stdin.readline() if from_stdin or not stdin.isatty() else getpass.getpass(prompt, stream=stderr)
    except EOFError:
        return ""
    except KeyboardInterrupt:
        print("Cancelled; nothing was stored.", file=stderr)
        return None
