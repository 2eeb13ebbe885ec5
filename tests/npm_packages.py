"""Pinned npm packages the tests run: installed on first use from a committed lock file.

Each directory (``tests/x402_verifiers``, ``tests/js_clients``, ``bundle``) holds a
package.json whose dependencies are exact versions and the package-lock.json that goes
with it; ``npm ci`` installs them into that directory's git-ignored ``node_modules``.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path

import pytest


def _pins(directory: Path) -> dict[str, str]:
    manifest = json.loads((directory / "package.json").read_text())
    return {**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}


def _installed(directory: Path, name: str) -> str | None:
    marker = directory / "node_modules" / name / "package.json"
    return json.loads(marker.read_text())["version"] if marker.exists() else None


def npm_ci(directory: Path, purpose: str) -> Path:
    """``directory`` with every pinned package installed (``npm ci`` when one is missing).

    Skips only when node or npm is not installed at all; an install that fails is a test
    failure, not a skip, so a broken pin cannot silently disable what ``purpose`` checks.
    A lock on package.json keeps concurrent pytest workers from installing into the same
    tree at once.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node/npm not installed: {purpose} cannot run")
    with open(directory / "package.json") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if any(_installed(directory, name) != version for name, version in _pins(directory).items()):
                done = subprocess.run(
                    ["npm", "ci", "--no-audit", "--no-fund"],
                    cwd=directory, capture_output=True, text=True, timeout=600, check=False,
                )
                if done.returncode != 0:
                    pytest.fail(f"npm ci in {directory} failed:\n{done.stdout}\n{done.stderr}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return directory
