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
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


PINNED_DIRS = (ROOT / "tests" / "js_clients", ROOT / "bundle", ROOT / "tests" / "x402_verifiers")  # as the tests first need them


def _install(directory: Path) -> str | None:
    """Install ``directory``'s pins unless they already are (under a lock on its package.json,
    so concurrent pytest processes never install into one tree at once); the failure's output,
    or ``None``."""
    with open(directory / "package.json") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if all(_installed(directory, name) == version for name, version in _pins(directory).items()):
                return None
            done = subprocess.run(
                ["npm", "ci"], cwd=directory, env=os.environ | _NPM_CONFIG,
                capture_output=True, text=True, timeout=600, check=False,
            )
            return None if done.returncode == 0 else f"{done.stdout}\n{done.stderr}"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install_in_background() -> threading.Thread | None:
    """Start installing every pinned tree in a thread, for a whole-suite run's first minutes.

    A fresh clone's three ``npm ci`` cost ~47 s of CPU (~13,000 files each for the JS clients and
    the x402 verifiers): started at session start they overlap the workers' collection and
    the tests that wait on real time, instead of stalling the one worker whose module needs
    them first (and the x402 verifiers' module, which runs late, the end of the run). A test
    still calls :func:`npm_ci`, which waits on the lock and reports a failure itself.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    thread = threading.Thread(target=lambda: [_install(directory) for directory in PINNED_DIRS], name="npm-ci")
    thread.start()
    return thread


def npm_ci(directory: Path, purpose: str) -> Path:
    """``directory`` with every pinned package installed (``npm ci`` when one is missing).

    Skips only when node or npm is not installed at all; an install that fails is a test
    failure, not a skip, so a broken pin cannot silently disable what ``purpose`` checks.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip(f"node/npm not installed: {purpose} cannot run")
    failure = _install(directory)
    if failure is not None:
        pytest.fail(f"npm ci in {directory} failed:\n{failure}")
    return directory
