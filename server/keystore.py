"""The OS keyring behind a small, safe, time-bounded interface.

Secrets (the NoneCap API key now, a wallet key later) are stored under the
service name ``nonecap-mcp`` with the secret's name as keyring "username".

Why this wrapper exists instead of calling ``keyring`` directly:

* **Start-up cost.** ``keyring`` (and D-Bus probing) is imported lazily, on
  the first keyring call, never when this module is imported.
* **Hangs.** A locked keyring waiting for an unlock prompt nobody can see, or
  backend detection stuck on a dead display, can block forever. Every call
  runs in a *daemon* thread and is abandoned after a timeout. A daemon thread
  (rather than an AnyIO worker, which is non-daemon) matters: an abandoned
  non-daemon thread keeps the interpreter from exiting.
* **stdin safety.** Backend detection is limited to "recommended" backends
  (priority >= 1), so keyrings.alt's EncryptedKeyring, which prompts with
  getpass and can swallow JSON-RPC lines from a stdio server's stdin, is never
  chosen implicitly. ``PYTHON_KEYRING_BACKEND`` and ``keyringrc.cfg`` still
  win, as keyring documents.
* **Errors.** Everything becomes :class:`KeystoreError` with one actionable
  sentence and never the secret, instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = [
    "CLI_TIMEOUT",
    "READ_TIMEOUT",
    "SERVICE",
    "KeyFileError",
    "KeystoreError",
    "backend_name",
    "delete_secret",
    "read_key_file",
    "read_secret",
    "read_secret_sync",
    "set_backend",
    "write_key_file",
    "write_secret",
]

SERVICE = "nonecap-mcp"

# Writes and deletes only happen from the CLI, where a desktop keyring may pop
# up an unlock dialog that a human has to answer; reads in the server must not
# stall a tool call for long.
READ_TIMEOUT = 5.0
CLI_TIMEOUT = 30.0

T = TypeVar("T")


class KeystoreError(Exception):
    """The OS keyring could not be used.

    The message says what went wrong and what to do about the keyring; it
    never contains a secret. It does not name an environment variable, since
    that depends on the secret: callers append their own fallback advice.
    """


class KeyringUnavailable(KeystoreError):
    """There is no usable keyring at all here (so nothing can be stored in it),
    as opposed to one that is locked, broken or not answering."""


_backend: KeyringBackend | None = None
_backend_lock = threading.Lock()
# The most recent call that timed out and may still be blocked inside the
# keyring. While it is alive, new calls fail at once instead of stacking up
# more stuck threads and making every caller wait out the full timeout again.
_stuck: _Call[Any] | None = None


def set_backend(backend: KeyringBackend | None) -> None:
    """Pin the keyring backend this module uses (tests, embedding apps).

    ``None`` drops the pin and any cached detection result, so the next call
    detects the backend again.
    """
    global _backend, _stuck
    _backend = backend
    _stuck = None


def _get_backend() -> KeyringBackend:
    """Detect the backend once per process; runs inside the worker thread
    because importing keyring and probing D-Bus can itself hang."""
    global _backend
    with _backend_lock:
        if _backend is None:
            import keyring.core

            try:
                keyring.core.init_backend(limit=keyring.core.recommended)
            except Exception as exc:  # a bad PYTHON_KEYRING_BACKEND / keyringrc.cfg
                raise KeystoreError(
                    "Could not load the keyring backend named by "
                    "PYTHON_KEYRING_BACKEND or keyringrc.cfg "
                    f"({type(exc).__name__}: {exc}). Fix or remove that setting."
                ) from None
            _backend = keyring.core.get_keyring()
        return _backend


class _Call(Generic[T]):
    """One keyring operation running in its own daemon thread."""

    def __init__(self, what: str, fn: Callable[[], T]) -> None:
        self.what = what
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        self._notify: Callable[[], None] | None = None
        self.started = time.monotonic()
        self.done = threading.Event()

    def start(self, notify: Callable[[], None] | None = None) -> None:
        self._notify = notify
        threading.Thread(target=self._run, name="nonecap-keyring", daemon=True).start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # re-raised in the caller's thread by result()
            self._error = exc
        finally:
            self.done.set()
            if self._notify is not None:
                self._notify()

    def result(self) -> T:
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


def _check_not_stuck() -> None:
    stuck = _stuck
    if stuck is not None and not stuck.done.is_set():
        waited = time.monotonic() - stuck.started
        raise KeystoreError(
            f"The OS keyring is still not answering an earlier request ({stuck.what}, "
            f"{waited:.0f} s ago); it may be locked and waiting for an unlock prompt. "
            "Unlock it or restart this program."
        )


def _left_waiting(call: _Call[Any]) -> None:
    """Remember a request nobody waits for any more: until it answers, later requests fail at once
    (`_check_not_stuck`) instead of each leaving one more thread waiting on the same silent keyring."""
    global _stuck
    if not call.done.is_set():
        _stuck = call


def _timed_out(call: _Call[Any], timeout: float) -> KeystoreError:
    _left_waiting(call)
    return KeystoreError(
        f"The OS keyring did not answer within {timeout:g} s (while trying to {call.what}). "
        "It may be locked and waiting for an unlock prompt, or its D-Bus service may "
        "be hung."
    )


def _translate(exc: Exception, *, secret: str | None = None) -> KeystoreError:
    """Turn a backend exception into one actionable sentence.

    ``secret`` (the value being written) is scrubbed from backend messages as
    a last line of defence against a backend that echoes it.
    """
    import keyring.errors

    if isinstance(exc, KeystoreError):
        return exc
    detail = str(exc).strip() or type(exc).__name__
    if secret:
        detail = detail.replace(secret, "***")
    if isinstance(exc, keyring.errors.NoKeyringError):
        return KeyringUnavailable(
            "No usable OS keyring was found: no Secret Service is reachable (is "
            "DBUS_SESSION_BUS_ADDRESS set, and is gnome-keyring or KeePassXC running?). "
            "Install or start a Secret Service."
        )
    elif isinstance(exc, keyring.errors.KeyringLocked):
        msg = f"The OS keyring is locked ({detail}). Unlock it, for example by logging in to a desktop session."
    elif isinstance(exc, keyring.errors.InitError):
        msg = (
            f"The OS keyring could not be opened ({detail}). If no desktop session is "
            "running, start and unlock a Secret Service (gnome-keyring-daemon --unlock)."
        )
    elif isinstance(exc, keyring.errors.KeyringError):
        msg = f"The OS keyring refused the operation ({type(exc).__name__}: {detail})."
    else:
        msg = f"The OS keyring backend failed ({type(exc).__name__}: {detail})."
    return KeystoreError(msg)


def _run_sync(what: str, fn: Callable[[], T], timeout: float, *, secret: str | None = None) -> T:
    _check_not_stuck()
    call = _Call(what, fn)
    call.start()
    if not call.done.wait(timeout):
        raise _timed_out(call, timeout)
    try:
        return call.result()
    except Exception as exc:
        raise _translate(exc, secret=secret) from None


async def _run_async(what: str, fn: Callable[[], T], timeout: float) -> T:
    _check_not_stuck()
    token = anyio.lowlevel.current_token()
    finished = anyio.Event()

    def notify() -> None:
        # RuntimeError (RunFinishedError): the event loop is gone, nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(finished.set, token=token)

    call = _Call(what, fn)
    call.start(notify)
    try:
        with anyio.fail_after(timeout):
            await finished.wait()
    except TimeoutError:
        raise _timed_out(call, timeout) from None
    except anyio.get_cancelled_exc_class():
        _left_waiting(call)  # the caller gave up first (its call's deadline); the thread still waits on the keyring
        raise
    try:
        return call.result()
    except Exception as exc:
        raise _translate(exc) from None


def _getter(name: str) -> Callable[[], str | None]:
    def get() -> str | None:
        return _get_backend().get_password(SERVICE, name)

    return get


async def read_secret(name: str, *, timeout: float = READ_TIMEOUT) -> str | None:
    """Read a secret without blocking the event loop for more than ``timeout``.

    Returns ``None`` when nothing is stored. Raises :class:`KeystoreError`
    when the keyring is unavailable, locked, broken or too slow.
    """
    return await _run_async(f"read {name!r}", _getter(name), timeout)


def read_secret_sync(name: str, *, timeout: float = READ_TIMEOUT) -> str | None:
    """Blocking twin of :func:`read_secret` for CLI commands (no event loop)."""
    return _run_sync(f"read {name!r}", _getter(name), timeout)


def write_secret(name: str, value: str, *, timeout: float = CLI_TIMEOUT) -> None:
    """Store a secret, then read it back to prove it stuck.

    CLI only: never call this from the stdio server, where a prompting
    backend could fight the protocol for stdin. The read-back catches
    backends that silently drop writes (``keyring --disable`` selects the
    null keyring, whose ``set_password`` is a no-op).
    """

    def write_and_verify() -> None:
        backend = _get_backend()
        backend.set_password(SERVICE, name, value)
        if backend.get_password(SERVICE, name) != value:
            raise KeystoreError(
                f"The keyring backend ({backend.name}) accepted the secret but did not "
                "keep it; keyring may be disabled (keyring --disable, keyringrc.cfg or "
                "PYTHON_KEYRING_BACKEND)."
            )

    _run_sync(f"store {name!r}", write_and_verify, timeout, secret=value)


def delete_secret(name: str, *, timeout: float = CLI_TIMEOUT) -> bool:
    """Delete a secret; ``True`` if one was stored and is now gone.

    Reads first because backends signal "nothing to delete" with the same
    ``PasswordDeleteError`` they use for real failures.
    """

    def delete() -> bool:
        backend = _get_backend()
        if backend.get_password(SERVICE, name) is None:
            return False
        backend.delete_password(SERVICE, name)
        return True

    return _run_sync(f"delete {name!r}", delete, timeout)


def backend_name(*, timeout: float = READ_TIMEOUT) -> str:
    """Human name of the backend in use, e.g. ``"SecretService Keyring"``;
    shown by ``auth status`` so users can tell where a key lives."""
    return _run_sync("detect the backend", lambda: str(_get_backend().name), timeout)


# A keyring-less machine (a headless server, a container) can keep a secret in a file
# readable only by its owner, as ssh does with its keys.
class KeyFileError(KeystoreError):
    """A secret file that cannot be created or must not be read; the message never holds the secret."""


def write_key_file(path: str | os.PathLike[str], value: str) -> Path:
    """Create ``path`` (never replace it) with mode 0600 and ``value`` in it.

    ``O_EXCL`` with mode 0600 at creation: there is no moment when the file exists
    with wider permissions, and an existing file (perhaps a funded key) is never overwritten.
    """
    target = Path(path).expanduser().absolute()
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{target} already exists; it was not overwritten (it may hold a funded key).") from None
    except OSError as exc:
        raise KeyFileError(f"could not create {target} ({exc.strerror}).") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return target


def read_key_file(path: str | os.PathLike[str]) -> str:
    """The secret in ``path``; refuses a file that others can read (group or world bits set)."""
    target = Path(path).expanduser()
    try:
        mode = target.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise KeyFileError(
                f"{target} can be read by other users (mode {mode & 0o777:03o}); it was not used. "
                f"Run `chmod 600 {target}`."
            )
        return target.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"could not read {target} ({exc.strerror or type(exc).__name__}).") from None
