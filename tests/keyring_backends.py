"""Test-only keyring backends.

Usable in-process (``keystore.set_backend(MemoryKeyring())``) or from a
subprocess via ``PYTHON_KEYRING_BACKEND=keyring_backends.MemoryKeyring`` with
``tests/`` on ``PYTHONPATH``.

Priorities are below 1 on purpose: keyring auto-registers every
``KeyringBackend`` subclass, and ``init_backend(limit=recommended)`` only
considers priority >= 1, so importing this module can never make a test
backend win real backend detection. ``PYTHON_KEYRING_BACKEND`` does not apply
the limit, so naming them explicitly still works.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

KEYRING_FILE_ENV = "NONECAP_TEST_KEYRING_FILE"


class MemoryKeyring(KeyringBackend):
    """A dict-backed keyring.

    When ``NONECAP_TEST_KEYRING_FILE`` names a file, the dict lives in that
    JSON file instead, so separate processes (login, status, logout) share it.
    """

    priority = 0.2  # below "recommended" (1): never auto-selected

    def __init__(self) -> None:
        super().__init__()
        self._items: dict[str, str] = {}

    def _path(self) -> Path | None:
        name = os.environ.get(KEYRING_FILE_ENV)
        return Path(name) if name else None

    def _load(self) -> dict[str, str]:
        path = self._path()
        if path is None:
            return self._items
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}

    def _save(self, items: dict[str, str]) -> None:
        path = self._path()
        if path is None:
            self._items = items
        else:
            path.write_text(json.dumps(items), encoding="utf-8")

    @staticmethod
    def _key(service: str, username: str) -> str:
        return f"{service}\0{username}"

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(self._key(service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        items = self._load()
        items[self._key(service, username)] = password
        self._save(items)

    def delete_password(self, service: str, username: str) -> None:
        items = self._load()
        if items.pop(self._key(service, username), None) is None:
            raise PasswordDeleteError("Password not found")
        self._save(items)


class HangingKeyring(KeyringBackend):
    """Blocks every call, like a keyring waiting for an unlock prompt nobody
    can see. Tests set :attr:`release` when done; the wait is capped so a
    forgotten release cannot block a test run forever."""

    priority = 0.1
    release = threading.Event()
    MAX_WAIT = 30.0

    def _hang(self) -> None:
        self.release.wait(self.MAX_WAIT)

    def get_password(self, service: str, username: str) -> str | None:
        self._hang()
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self._hang()

    def delete_password(self, service: str, username: str) -> None:
        self._hang()


class SessionBusKeyring(MemoryKeyring):
    """A MemoryKeyring reachable only with DBUS_SESSION_BUS_ADDRESS set, like the
    Secret Service: a terminal finds it, a server started by an MCP host does not."""

    priority = 0.15

    def _load(self) -> dict[str, str]:
        if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
            from keyring.errors import NoKeyringError

            raise NoKeyringError("no session bus")
        return super()._load()
