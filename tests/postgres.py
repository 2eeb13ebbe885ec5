"""A real PostgreSQL for the tests: Debian's server binaries, a throwaway cluster in a temp dir.

`initdb` refuses to run as root, so as root the cluster is made and run as the `postgres`
system user (which Debian's package creates). Skipped with a reason only where the binaries
are missing; `.ci/run` installs them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nonecap_mcp.store.db import Database, PostgresDatabase, SQLiteDatabase


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster on 127.0.0.1 and yield its DSN; stopped and deleted afterwards."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="nonecap-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "nonecap", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=200"
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"),
                        "-w", "-t", "60", "start"], check=True, capture_output=True, timeout=90)
        try:
            yield f"postgresql://nonecap@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


SHARED_ENV = "NONECAP_TEST_POSTGRES_FILE"  # where the xdist controller writes its cluster's DSN for the workers


class SharedCluster:
    """One cluster for every xdist worker: the controller starts it in the background while the
    workers start up (a cluster per worker cost each its own initdb and server), and stops it at
    the end. Tests stay apart by schema (`schema_url`), as they did on a cluster of their own."""

    def __init__(self) -> None:
        self.file = Path(tempfile.mkdtemp(prefix="nonecap-pg-dsn-")) / "dsn"
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shared-postgres", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with postgres_cluster() as url:
                self._publish(url)
                self._done.wait()
        except pytest.skip.Exception as exc:  # binaries or the postgres user missing: the workers skip
            self._publish(f"skip: {exc}")
        except Exception as exc:  # a cluster that fails to start fails the tests that need it, never skips them
            self._publish(f"error: {type(exc).__name__}: {exc}")

    def _publish(self, text: str) -> None:
        partial = self.file.with_suffix(".partial")
        partial.write_text(text)
        partial.rename(self.file)

    def close(self) -> None:
        self._done.set()
        self._thread.join(60)
        shutil.rmtree(self.file.parent, ignore_errors=True)


def shared_cluster_url(timeout: float = 120) -> str | None:
    """The controller's shared cluster, once it is up (None outside xdist: start one of your own)."""
    name = os.environ.get(SHARED_ENV)
    if not name:
        return None
    path, give_up = Path(name), time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > give_up:
            raise TimeoutError(f"the shared PostgreSQL did not start within {timeout:.0f} s")
        time.sleep(0.05)
    text = path.read_text()
    if text.startswith("skip: "):
        pytest.skip(text.removeprefix("skip: "))
    if text.startswith("error: "):
        raise RuntimeError("the shared PostgreSQL did not start: " + text.removeprefix("error: "))
    return text


def schema_url(url: str, name: str) -> str:
    """`url` with its tables in a fresh schema of their own (one per test), like a fresh database."""
    import hashlib

    import psycopg

    schema = "t" + hashlib.sha256(name.encode()).hexdigest()[:16]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{url}?options=-csearch_path%3D{schema}"


def open_store(target: str) -> Database:
    """A new handle (its own connections, as another process or replica holds) on `target`:
    a PostgreSQL URL, else a SQLite file path."""
    return PostgresDatabase(target) if target.startswith("postgresql://") else SQLiteDatabase(Path(target))
