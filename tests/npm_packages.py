"""Pinned npm packages the tests run: installed on first use from a committed lock file.

Each directory (``tests/x402_verifiers``, ``tests/js_clients``, ``bundle``) holds a
package.json whose dependencies are exact versions and the package-lock.json that goes
with it; ``npm ci`` installs them into that directory's git-ignored ``node_modules``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest


# npm's extras that prove nothing here (the lock pins every tarball by its integrity hash): no
# audit, no funding notice, no check for a newer npm, no registry round trip for what the cache
# already holds. Given through the environment rather than as flags, so that an install script's
# own `npm install` (the `node` package fetches its platform's binary that way) skips them too.
_NPM_CONFIG = {"npm_config_audit": "false", "npm_config_fund": "false", "npm_config_update_notifier": "false",
               "npm_config_prefer_offline": "true"}


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
                    ["npm", "ci"], cwd=directory, env=os.environ | _NPM_CONFIG,
                    capture_output=True, text=True, timeout=600, check=False,
                )
                if done.returncode != 0:
                    pytest.fail(f"npm ci in {directory} failed:\n{done.stdout}\n{done.stderr}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return directory
