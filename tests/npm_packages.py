"""Pinned npm packages the tests run: installed on first use from a committed lock file.

Each directory (``tests/x402_verifiers``, ``tests/js_clients``, ``bundle``) holds a
package.json whose dependencies are exact versions and the package-lock.json that goes
with it; ``npm ci`` installs them once per machine into the user's cache
(``~/.cache/nonecap-mcp-tests/npm``), hard-linked from there into that directory's
git-ignored ``node_modules``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
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


def _cached_tree(directory: Path) -> Path:
    """Where this machine keeps ``directory``'s installed tree: the user's cache, keyed by its
    manifest and lock file, the platform and the Node.js that runs npm (the `node` package
    fetches a platform's binary), so that any clone or worktree with the same pins reuses it."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    key = hashlib.sha256()
    for part in ((directory / "package.json").read_bytes(), (directory / "package-lock.json").read_bytes(),
                 f"{sys.platform} {platform.machine()} {node}".encode()):
        key.update(hashlib.sha256(part).digest())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "nonecap-mcp-tests" / "npm" / f"{directory.name}-{key.hexdigest()[:16]}"


def _npm_ci(directory: Path) -> str | None:
    done = subprocess.run(["npm", "ci"], cwd=directory, env=os.environ | _NPM_CONFIG,
                          capture_output=True, text=True, timeout=600, check=False)
    return None if done.returncode == 0 else f"{done.stdout}\n{done.stderr}"


def _fill_cache(directory: Path, cached: Path) -> str | None:
    """`npm ci` of ``directory``'s pins into ``cached`` (beside it first, then renamed, so a run cut
    off mid-install never leaves a half tree behind for the next one)."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{cached.name}.", dir=cached.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(directory / name, staging / name)
        failure = _npm_ci(staging)
        if failure is None:
            staging.rename(cached)
        return failure
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install(directory: Path) -> str | None:
    """Install ``directory``'s pins unless they already are; the failure's output, or ``None``.

    A fresh clone's three `npm ci` cost ~47 s of CPU for ~30,000 files, so the installed tree is
    kept in the user's cache (as npm keeps its tarballs) and hard-linked into ``node_modules``
    (~1 s); where linking is impossible (another file system), `npm ci` installs in place. Locks
    on package.json and on the cache entry keep concurrent pytest processes (xdist workers,
    other clones) from installing one tree twice at once.
    """
    with open(directory / "package.json") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if all(_installed(directory, name) == version for name, version in _pins(directory).items()):
                return None
            cached = _cached_tree(directory)
            cached.parent.mkdir(parents=True, exist_ok=True)
            with open(cached.parent / f"{cached.name}.lock", "w") as entry:
                fcntl.flock(entry, fcntl.LOCK_EX)
                if not (cached / "node_modules").is_dir() and (failure := _fill_cache(directory, cached)) is not None:
                    return failure
            target = directory / "node_modules"
            shutil.rmtree(target, ignore_errors=True)
            try:
                shutil.copytree(cached / "node_modules", target, symlinks=True, copy_function=os.link)
            except OSError:
                shutil.rmtree(target, ignore_errors=True)
                return _npm_ci(directory)
            # npm's record of the install, copied rather than linked: it must be newer than this
            # clone's lock file for bundle/build.sh to see the tree as current.
            marker = target / ".package-lock.json"
            if marker.exists():
                marker.unlink()
                shutil.copyfile(cached / "node_modules" / ".package-lock.json", marker)
            if all(_installed(directory, name) == version for name, version in _pins(directory).items()):
                return None
            shutil.rmtree(target, ignore_errors=True)  # a cache entry someone pruned: install afresh
            return _npm_ci(directory)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install_in_background() -> threading.Thread | None:
    """Start installing every pinned tree in a thread, for a whole-suite run's first minutes.

    Where this machine has not installed these pins before (see `_install`), the three ``npm ci``
    cost ~47 s of CPU (~13,000 files each for the JS clients and the x402 verifiers): started at session start they overlap the workers' collection and
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
