"""Running code in a child Python the way a separate CLI or server process would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from keyring_backends import KEYRING_FILE_ENV

TESTS_DIR = Path(__file__).resolve().parent


def child_env(drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The current env with tests/ importable and no inherited secret, backend or keyring file."""
    dropped = {*drop, "PYTHON_KEYRING_BACKEND", KEYRING_FILE_ENV}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
    return env | extra


def run_python(code: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], input=stdin, env=env, capture_output=True, text=True, timeout=30)
