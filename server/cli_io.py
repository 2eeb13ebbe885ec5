"""Terminal I/O shared by the CLI commands that handle secrets (``auth``, ``wallet``).

One implementation of "read a secret" so every command behaves the same way: no echo
on a terminal, one line from a pipe for scripts (never a command-line argument, which
``ps`` and shell history would see), and the same ``Error:``/``Note:`` lines on stderr.
Each command builds one :class:`Console` from its optional stream and env arguments
and talks through it, instead of threading four values through every helper.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Console"]


@dataclass(frozen=True)
class Console:
    """The streams and environment a command talks to.

    Commands take each of them as an optional argument so tests can pass
    ``StringIO`` and a dict; :meth:`of` fills in the real ones.
    """

    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    env: Mapping[str, str]

    @classmethod
    def of(
        cls,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Console:
        """The given streams and env, the process's own for any left out.

        Looked up at call time, not as parameter defaults, so a redirected
        ``sys.stdout`` (``contextlib.redirect_stdout``, pytest's capture) is honoured.
        """
        return cls(
            stdin=sys.stdin if stdin is None else stdin,
            stdout=sys.stdout if stdout is None else stdout,
            stderr=sys.stderr if stderr is None else stderr,
            env=os.environ if env is None else env,
        )

    def error(self, message: str) -> None:
        """One ``Error:`` line on stderr."""
        print(f"Error: {message}", file=self.stderr)

    def note(self, message: str) -> None:
        """One ``Note:`` line on stderr."""
        print(f"Note: {message}", file=self.stderr)

    def read_secret(self, prompt: str, *, from_stdin: bool, what: str, command: str) -> str | int:
        """Read a secret: a hidden prompt (on stderr) when stdin is a terminal,
        else one line of stdin; ``from_stdin`` forces the latter.

        Returns the raw text for the caller to validate, or the exit code after
        saying why there is none: 130 when Ctrl-C cancelled, 2 when nothing was
        given (naming ``what`` was missing and how to pipe it into ``command``).
        """
        try:
            if from_stdin or not self.stdin.isatty():
                raw = self.stdin.readline()
            else:
                raw = getpass.getpass(prompt, stream=self.stderr)
        except EOFError:
            raw = ""
        except KeyboardInterrupt:
            print("Cancelled; nothing was stored.", file=self.stderr)
            return 130
        if not raw.strip():
            self.error(
                f"no {what} was given; nothing was stored. Paste it at the prompt, or pipe it in: "
                f"`nonecap-mcp {command} --stdin < keyfile`.",
            )
            return 2
        return raw

    def note_env_override(
        self,
        variable: str,
        *,
        mask: Callable[[str], str] | None = None,
        removed: bool = False,
    ) -> None:
        """Warn when ``variable`` is set: it beats whatever the keyring holds, so
        a keyring change alone does not change which key the server uses.

        ``mask`` shows a recognisable part of the value (left out for keys that
        must never be shown at all); ``removed`` adds how to stop using it.
        """
        raw = self.env.get(variable, "")
        if not raw.strip():
            return
        label = variable if mask is None else f"{variable} ({mask(raw)})"
        message = f"{label} is set in this environment and takes precedence over the keyring."
        self.note(f"{message} Unset it to stop using that key." if removed else message)
