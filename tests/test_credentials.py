"""API key resolution, the keyring wrapper and the ``auth`` CLI functions.

The leak checks are the point of most tests here: whatever goes wrong, the
key must not appear in an exception message or in CLI output.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring.backends.fail
import keyring.backends.null
import keyring.errors
import pytest
from child_process import child_env as shared_child_env
from child_process import run_python
from keyring_backends import KEYRING_FILE_ENV, HangingKeyring, MemoryKeyring
from nonecap_mcp import auth_cli, cli_io, keystore
from nonecap_mcp.credentials import (
    API_KEY_ENV,
    API_KEY_NAME,
    NO_KEY_MESSAGE,
    CredentialError,
    Secret,
    check_api_key_format,
    key_mode,
    mask_api_key,
    resolve_api_key,
)
from nonecap_mcp.sandbox import SANDBOX_API_KEY, Sandbox

LIVE_KEY = "nc_live_" + "Zq3x9Kp2Lm8Vb7Nc4Rt6Yw1Hs5Jd0Fg-_wxyz"[-32:]
TEST_KEY = "nc_test_" + "pL0oKi9Uj8Yh7Tg6Rf5Ed4Ws3Qa2Zx1_abcd"[-32:]
ALL_KEYS = (LIVE_KEY, TEST_KEY)
assert len(LIVE_KEY) == len(TEST_KEY) == 40

MALFORMED_KEYS = [
    LIVE_KEY[:-1],  # one character short
    LIVE_KEY + "Q",  # one too many
    '"' + LIVE_KEY + '"',  # quoted in a JSON/YAML config
    "sk_live_" + LIVE_KEY[8:],  # wrong vendor prefix
    LIVE_KEY[:20] + " " + LIVE_KEY[20:],  # broken by a space
    LIVE_KEY[:-4] + "ab=c",  # invalid character
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_keystore(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's real keyring, env key or backend choice."""
    for name in (API_KEY_ENV, "PYTHON_KEYRING_BACKEND", KEYRING_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    yield
    keystore.set_backend(None)


@pytest.fixture
def memory() -> MemoryKeyring:
    backend = MemoryKeyring()
    keystore.set_backend(backend)
    return backend


@pytest.fixture
def hanging() -> Iterator[HangingKeyring]:
    HangingKeyring.release.clear()
    backend = HangingKeyring()
    keystore.set_backend(backend)
    yield backend
    HangingKeyring.release.set()


def use_failing_backend(monkeypatch: pytest.MonkeyPatch, method: str, exc: Exception) -> MemoryKeyring:
    backend = MemoryKeyring()

    def fail(*args: object) -> None:
        raise exc

    monkeypatch.setattr(backend, method, fail)
    keystore.set_backend(backend)
    return backend


def assert_no_key(*texts: str) -> None:
    for text in texts:
        for key in (*ALL_KEYS, *MALFORMED_KEYS):
            assert key.strip('"') not in text
        for key in ALL_KEYS:
            assert key[8:20] not in text  # not even a chunk of the body


# --- resolution -----------------------------------------------------------


@pytest.mark.anyio
async def test_env_wins_over_keyring(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, TEST_KEY)
    key = await resolve_api_key({API_KEY_ENV: f"  {LIVE_KEY}\n"})
    assert key.reveal() == LIVE_KEY


@pytest.mark.anyio
@pytest.mark.parametrize("env", [{}, {API_KEY_ENV: ""}, {API_KEY_ENV: "   "}])
async def test_keyring_used_when_env_unset_or_empty(memory: MemoryKeyring, env: dict[str, str]) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, TEST_KEY)
    assert (await resolve_api_key(env)).reveal() == TEST_KEY


@pytest.mark.anyio
async def test_env_defaults_to_os_environ(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, LIVE_KEY)
    assert (await resolve_api_key()).reveal() == LIVE_KEY


@pytest.mark.anyio
async def test_no_key_anywhere_says_how_to_set_one(memory: MemoryKeyring) -> None:
    with pytest.raises(CredentialError) as info:
        await resolve_api_key({})
    assert str(info.value) == NO_KEY_MESSAGE
    for hint in (API_KEY_ENV, "nonecap-mcp auth login", "nonecap-mcp serve --sandbox"):
        assert hint in NO_KEY_MESSAGE


@pytest.mark.anyio
@pytest.mark.parametrize("bad", MALFORMED_KEYS)
async def test_malformed_env_key_is_rejected_without_echo(memory: MemoryKeyring, bad: str) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, TEST_KEY)  # a bad env key must not fall back
    with pytest.raises(CredentialError) as info:
        await resolve_api_key({API_KEY_ENV: bad})
    message = str(info.value)
    assert API_KEY_ENV in message and "nc_live_ or nc_test_" in message
    assert_no_key(message)


@pytest.mark.anyio
@pytest.mark.parametrize("bad", MALFORMED_KEYS)
async def test_malformed_keyring_key_is_rejected_without_echo(memory: MemoryKeyring, bad: str) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, bad)
    with pytest.raises(CredentialError) as info:
        await resolve_api_key({})
    message = str(info.value)
    assert "OS keyring" in message and "nonecap-mcp auth login" in message
    assert_no_key(message)


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        (LIVE_KEY[:-1], "31 characters after the prefix"),
        ('"' + LIVE_KEY + '"', "quotes"),
        ("${NONECAP_API_KEY}", "placeholder"),
        ("sk_live_" + LIVE_KEY[8:], "does not start with"),
        (LIVE_KEY[:-4] + "ab=c", "characters other than"),
    ],
)
def test_format_errors_say_what_is_wrong(bad: str, hint: str) -> None:
    with pytest.raises(CredentialError, match=hint):
        check_api_key_format(bad)


def test_format_check_strips_and_reports_mode() -> None:
    assert check_api_key_format(f"\t{LIVE_KEY}\r\n") == LIVE_KEY
    assert key_mode(LIVE_KEY) == "live"
    assert key_mode(TEST_KEY) == "test"
    with pytest.raises(CredentialError):
        key_mode(LIVE_KEY[:-1])


# --- Secret and masking ---------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    secret = Secret(LIVE_KEY)
    renderings = [
        str(secret),
        repr(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>50}",
        "%s %r" % (secret, secret),  # noqa: UP031  # logging still formats this way
        repr([secret]),
        repr({"key": secret}),
        str(ValueError(secret)),
    ]
    assert_no_key(*renderings)
    assert repr(secret) == "Secret('***')"
    assert secret.reveal() == LIVE_KEY


def test_secret_compares_by_value_and_is_not_hashable() -> None:
    assert Secret(LIVE_KEY) == Secret(LIVE_KEY)
    assert Secret(LIVE_KEY) != Secret(TEST_KEY)
    assert Secret(LIVE_KEY) != LIVE_KEY  # no accidental comparison with plain strings
    with pytest.raises(TypeError):
        hash(Secret(LIVE_KEY))
    with pytest.raises(TypeError):
        Secret(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "masked"),
    [
        (LIVE_KEY, "nc_live_…wxyz"),
        (TEST_KEY, "nc_test_…abcd"),
        (f" {LIVE_KEY}\n", "nc_live_…wxyz"),
        (LIVE_KEY[:-1], "…xy"),
        ("short", "***"),
        ("", "***"),
    ],
)
def test_mask_api_key(key: str, masked: str) -> None:
    assert mask_api_key(key) == masked


# --- keyring failures -----------------------------------------------------


@pytest.mark.anyio
async def test_hanging_keyring_times_out_with_guidance(hanging: HangingKeyring) -> None:
    started = time.monotonic()
    with pytest.raises(CredentialError) as info:
        await resolve_api_key({}, timeout=0.3)
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert "did not answer within 0.3 s" in message and API_KEY_ENV in message

    # The stuck call is remembered: the next caller fails at once instead of
    # waiting out another timeout and stacking up another blocked thread.
    started = time.monotonic()
    with pytest.raises(CredentialError, match="still not answering"):
        await resolve_api_key({}, timeout=5)
    assert time.monotonic() - started < 0.5

    # Once the keyring answers again, it is used again.
    hanging.release.set()
    keystore.set_backend(MemoryKeyring())
    with pytest.raises(CredentialError, match="No NoneCap API key is configured"):
        await resolve_api_key({})


def test_hanging_keyring_sync_read_times_out(hanging: HangingKeyring) -> None:
    started = time.monotonic()
    with pytest.raises(keystore.KeystoreError, match=r"did not answer within 0\.2 s"):
        keystore.read_secret_sync(API_KEY_NAME, timeout=0.2)
    assert time.monotonic() - started < 2


@pytest.mark.anyio
async def test_no_keyring_backend_gives_clear_error() -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())
    with pytest.raises(CredentialError) as info:
        await resolve_api_key({})
    message = str(info.value)
    assert "No usable OS keyring" in message and API_KEY_ENV in message
    assert "Traceback" not in message
    assert info.value.code == "keyring_unavailable"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (keyring.errors.KeyringLocked("Failed to unlock the collection!"), "locked"),
        (keyring.errors.InitError("Failed to create the collection: Prompt dismissed.."), "could not be opened"),
        (OSError("connection refused"), r"backend failed \(OSError: connection refused\)"),
    ],
)
async def test_keyring_errors_become_actionable(monkeypatch: pytest.MonkeyPatch, exc: Exception, expected: str) -> None:
    use_failing_backend(monkeypatch, "get_password", exc)
    with pytest.raises(CredentialError, match=expected) as info:
        await resolve_api_key({})
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unloadable_configured_backend_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "no_such_module.Keyring")
    with pytest.raises(
        keystore.KeystoreError, match="Could not load the keyring backend named by PYTHON_KEYRING_BACKEND"
    ):
        keystore.read_secret_sync(API_KEY_NAME)


def test_write_is_verified_by_reading_back() -> None:
    keystore.set_backend(keyring.backends.null.Keyring())  # what `keyring --disable` selects
    with pytest.raises(keystore.KeystoreError, match="did not keep it"):
        keystore.write_secret(API_KEY_NAME, LIVE_KEY)


def test_write_error_never_echoes_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    use_failing_backend(monkeypatch, "set_password", keyring.errors.PasswordSetError(f"rejected {LIVE_KEY}"))
    with pytest.raises(keystore.KeystoreError) as info:
        keystore.write_secret(API_KEY_NAME, LIVE_KEY)
    assert "rejected ***" in str(info.value)
    assert_no_key(str(info.value))


def test_delete_reports_whether_anything_was_removed(memory: MemoryKeyring) -> None:
    keystore.write_secret(API_KEY_NAME, LIVE_KEY)
    assert keystore.read_secret_sync(API_KEY_NAME) == LIVE_KEY
    assert keystore.delete_secret(API_KEY_NAME) is True
    assert keystore.delete_secret(API_KEY_NAME) is False
    assert keystore.read_secret_sync(API_KEY_NAME) is None


# --- subprocess helpers ---------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    return shared_child_env((API_KEY_ENV,), **extra)


def auth_command(call: str) -> str:
    return f"import sys; from nonecap_mcp import auth_cli; sys.exit(auth_cli.{call})"


def test_detection_never_picks_non_recommended_backends(tmp_path: Path) -> None:
    """Importing keyring_backends registers MemoryKeyring (priority 0.2), which
    beats fail.Keyring (0) in keyring's default detection, just as keyrings.alt's
    getpass-prompting EncryptedKeyring would. With limit=recommended it must not
    be chosen. The env also mimics an MCP host: no DBUS_SESSION_BUS_ADDRESS."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no keyringrc.cfg
        "PYTHONPATH": child_env()["PYTHONPATH"],
    }
    code = (
        "import anyio, keyring_backends\n"
        "from nonecap_mcp import credentials, keystore\n"
        "print(keystore.backend_name())\n"
        "try:\n"
        "    anyio.run(credentials.resolve_api_key, {})\n"
        "except credentials.CredentialError as exc:\n"
        "    print(exc)\n"
    )
    proc = run_python(code, env)
    assert proc.returncode == 0, proc.stderr
    backend, message = proc.stdout.splitlines()
    assert backend == "fail Keyring"
    assert "No usable OS keyring" in message and API_KEY_ENV in message


def test_process_exits_promptly_after_a_keyring_hang() -> None:
    """The abandoned keyring call must not keep the interpreter alive (an
    AnyIO worker thread would: they are not daemon threads)."""
    code = (
        "import anyio, functools\n"
        "from nonecap_mcp import credentials\n"
        "try:\n"
        "    anyio.run(functools.partial(credentials.resolve_api_key, {}, timeout=0.2))\n"
        "except credentials.CredentialError as exc:\n"
        "    print(exc)\n"
    )
    started = time.monotonic()
    proc = run_python(code, child_env(PYTHON_KEYRING_BACKEND="keyring_backends.HangingKeyring"))
    assert time.monotonic() - started < 5  # HangingKeyring would otherwise block for 30 s
    assert proc.returncode == 0, proc.stderr
    assert "did not answer within 0.2 s" in proc.stdout


# --- CLI functions --------------------------------------------------------


class TtyInput(io.StringIO):
    def isatty(self) -> bool:
        return True


login_offline = functools.partial(auth_cli.login, verify=False)  # `auth login --no-verify`


def run_cli(fn: Callable[..., int], *, env: dict[str, str] | None = None, **kwargs: object) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = fn(stdout=stdout, stderr=stderr, env={} if env is None else env, **kwargs)
    assert_no_key(stdout.getvalue(), stderr.getvalue())
    return code, stdout.getvalue(), stderr.getvalue()


def test_login_reads_a_piped_key(memory: MemoryKeyring) -> None:
    code, out, err = run_cli(login_offline, stdin=io.StringIO(LIVE_KEY + "\n"))
    assert code == 0, err
    assert out == "Stored API key nc_live_…wxyz in the OS keyring (keyring backends MemoryKeyring).\n"
    assert err == ""
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) == LIVE_KEY


def test_login_prompts_without_echo_on_a_tty(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts: list[tuple[str, object]] = []

    def fake_getpass(prompt: str, stream: object = None) -> str:
        prompts.append((prompt, stream))
        return TEST_KEY

    monkeypatch.setattr(cli_io.getpass, "getpass", fake_getpass)
    stderr = io.StringIO()
    code = login_offline(stdin=TtyInput(), stdout=io.StringIO(), stderr=stderr, env={})
    assert code == 0
    assert prompts == [("NoneCap API key (input is hidden): ", stderr)]
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) == TEST_KEY


def test_login_from_stdin_flag_skips_the_prompt_on_a_tty(memory: MemoryKeyring) -> None:
    code, _, _ = run_cli(login_offline, from_stdin=True, stdin=TtyInput(TEST_KEY))
    assert code == 0
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) == TEST_KEY


@pytest.mark.parametrize("given", ["", "\n", "   \n"])
def test_login_without_a_key_is_a_usage_error(memory: MemoryKeyring, given: str) -> None:
    code, out, err = run_cli(login_offline, stdin=io.StringIO(given))
    assert code == 2 and out == ""
    assert err.startswith("Error: no API key was given") and err.count("\n") == 1


@pytest.mark.parametrize("bad", MALFORMED_KEYS)
def test_login_rejects_malformed_keys(memory: MemoryKeyring, bad: str) -> None:
    code, out, err = run_cli(login_offline, stdin=io.StringIO(bad + "\n"))
    assert code == 1 and out == ""
    assert "malformed" in err and err.count("\n") == 1
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) is None


def test_login_interrupted(memory: MemoryKeyring, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(prompt: str, stream: object = None) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_io.getpass, "getpass", interrupt)
    code, _, err = run_cli(login_offline, stdin=TtyInput())
    assert code == 130 and "nothing was stored" in err


def test_login_checks_the_key_with_the_api_before_storing_it(memory: MemoryKeyring, sandbox: Sandbox) -> None:
    code, out, err = run_cli(auth_cli.login, stdin=io.StringIO(SANDBOX_API_KEY + "\n"), env={"NONECAP_API_BASE": sandbox.url})
    assert code == 0, err
    assert "the key works" in err and "100 credits" in err
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) == SANDBOX_API_KEY
    assert [(r.method, r.path) for r in sandbox.requests] == [("GET", "/v1/me")]


def test_login_does_not_store_a_key_the_api_rejects(memory: MemoryKeyring, sandbox: Sandbox) -> None:
    code, out, err = run_cli(auth_cli.login, stdin=io.StringIO(LIVE_KEY + "\n"), env={"NONECAP_API_BASE": sandbox.url})
    assert code == 1 and out == ""
    assert "401" in err and "not stored" in err and "nc_live_…wxyz" in err
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) is None


def test_login_with_the_api_unreachable_stores_nothing_and_names_no_verify(memory: MemoryKeyring) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, out, err = run_cli(auth_cli.login, stdin=io.StringIO(LIVE_KEY + "\n"), env={"NONECAP_API_BASE": f"http://127.0.0.1:{port}"})
    assert code == 1 and "--no-verify" in err and "not stored" in err
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) is None
    assert login_offline(stdin=io.StringIO(LIVE_KEY + "\n"), stdout=io.StringIO(), stderr=io.StringIO(), env={}) == 0
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) == LIVE_KEY


def test_login_without_a_keyring_fails_cleanly() -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())
    code, out, err = run_cli(login_offline, stdin=io.StringIO(LIVE_KEY))
    assert code == 1 and out == ""
    assert "No usable OS keyring" in err and API_KEY_ENV in err and err.count("\n") == 1


def test_login_notes_env_key_and_dbus_address(memory: MemoryKeyring) -> None:
    env = {API_KEY_ENV: TEST_KEY, "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"}
    code, _, err = run_cli(login_offline, stdin=io.StringIO(LIVE_KEY), env=env)
    assert code == 0
    assert "NONECAP_API_KEY (nc_test_…abcd) is set in this environment" in err
    assert '"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus"' in err


def test_status_with_keyring_key(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, TEST_KEY)
    code, out, err = run_cli(auth_cli.status)
    assert code == 0 and err == ""
    assert out.splitlines() == [
        "API key: nc_test_…abcd (test mode)",
        "Source:  OS keyring (keyring backends MemoryKeyring)",
    ]


def test_status_with_env_key_shadowing_keyring(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, TEST_KEY)
    code, out, _ = run_cli(auth_cli.status, env={API_KEY_ENV: LIVE_KEY})
    assert code == 0
    assert out.splitlines() == [
        "API key: nc_live_…wxyz (live mode)",
        "Source:  NONECAP_API_KEY environment variable",
        "Keyring: keyring backends MemoryKeyring, holds nc_test_…abcd (unused while NONECAP_API_KEY is set)",
    ]


def test_status_with_env_key_and_broken_keyring() -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())
    code, out, _ = run_cli(auth_cli.status, env={API_KEY_ENV: LIVE_KEY})
    assert code == 0
    assert "Keyring: unavailable (No usable OS keyring" in out


def test_status_without_a_key(memory: MemoryKeyring) -> None:
    code, out, err = run_cli(auth_cli.status)
    assert code == 1
    assert out.startswith("API key: none")
    assert err == f"Error: {NO_KEY_MESSAGE}\n"


@pytest.mark.parametrize("where", ["env", "keyring"])
def test_status_with_malformed_key(memory: MemoryKeyring, where: str) -> None:
    bad = LIVE_KEY[:-1]
    env = {API_KEY_ENV: bad} if where == "env" else {}
    if where == "keyring":
        memory.set_password(keystore.SERVICE, API_KEY_NAME, bad)
    code, out, err = run_cli(auth_cli.status, env=env)
    assert code == 1 and out == ""
    assert "malformed" in err and err.count("\n") == 1


def test_status_with_broken_keyring_and_no_env_key() -> None:
    keystore.set_backend(keyring.backends.fail.Keyring())
    code, out, err = run_cli(auth_cli.status)
    assert code == 1 and out == ""
    assert "No usable OS keyring" in err and API_KEY_ENV in err


def test_logout(memory: MemoryKeyring) -> None:
    memory.set_password(keystore.SERVICE, API_KEY_NAME, LIVE_KEY)
    code, out, err = run_cli(auth_cli.logout, env={API_KEY_ENV: TEST_KEY})
    assert code == 0
    assert out == "Removed the API key from the OS keyring (keyring backends MemoryKeyring).\n"
    assert "NONECAP_API_KEY (nc_test_…abcd) is set in this environment" in err
    assert memory.get_password(keystore.SERVICE, API_KEY_NAME) is None

    code, out, err = run_cli(auth_cli.logout)
    assert code == 0 and err == ""
    assert out.startswith("No API key was stored in the OS keyring")


def test_logout_with_broken_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    use_failing_backend(monkeypatch, "get_password", keyring.errors.KeyringLocked("Failed to unlock"))
    code, out, err = run_cli(auth_cli.logout)
    assert code == 1 and out == ""
    assert "locked" in err and err.count("\n") == 1


# --- whole processes ------------------------------------------------------


def check_round_trip(env: dict[str, str], backend: str) -> None:
    """login (piped) -> resolve in the server's async path -> status -> logout -> status."""
    login = run_python(auth_command("login(from_stdin=True, verify=False)"), env, stdin=LIVE_KEY + "\n")
    assert login.returncode == 0, login.stderr
    assert login.stdout == f"Stored API key nc_live_…wxyz in the OS keyring ({backend}).\n"

    resolve = run_python(
        "import anyio; from nonecap_mcp import credentials\n"
        "key = anyio.run(credentials.resolve_api_key, {})\n"
        "print(credentials.mask_api_key(key.reveal()), key)",
        env,
    )
    assert resolve.returncode == 0, resolve.stderr
    assert resolve.stdout == "nc_live_…wxyz ***\n"

    status = run_python(auth_command("status()"), env)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        "API key: nc_live_…wxyz (live mode)",
        f"Source:  OS keyring ({backend})",
    ]

    logout = run_python(auth_command("logout()"), env)
    assert logout.returncode == 0, logout.stderr
    assert logout.stdout == f"Removed the API key from the OS keyring ({backend}).\n"

    after = run_python(auth_command("status()"), env)
    assert after.returncode == 1
    assert after.stderr == f"Error: {NO_KEY_MESSAGE}\n"

    for proc in (login, resolve, status, logout, after):
        assert_no_key(proc.stdout, proc.stderr)


def test_cli_round_trip_in_subprocesses(tmp_path: Path) -> None:
    store = tmp_path / "keyring.json"
    env = child_env(PYTHON_KEYRING_BACKEND="keyring_backends.MemoryKeyring", **{KEYRING_FILE_ENV: str(store)})
    check_round_trip(env, "keyring backends MemoryKeyring")
    assert store.read_text() == "{}"


@pytest.fixture
def secret_service(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private D-Bus session bus with an unlocked gnome-keyring on it.

    Yields a child env pointing at it. Fresh HOME/XDG dirs give a new
    login.keyring per run; gnome-keyring-daemon exits when the bus goes away.
    """
    if not (shutil.which("gnome-keyring-daemon") and shutil.which("dbus-daemon")):
        pytest.skip("needs gnome-keyring-daemon and dbus-daemon (apt-get install gnome-keyring)")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONPATH": child_env()["PYTHONPATH"],
    }
    bus = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert bus.stdout is not None
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()
        # The daemon forks and keeps inherited fds open, so its output must
        # not be a pipe we wait on.
        subprocess.run(
            ["gnome-keyring-daemon", "--unlock", "--components=secrets"],
            input="test-password",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            timeout=10,
            check=True,
        )
        yield env
    finally:
        bus.terminate()
        bus.wait(timeout=10)
        assert bus.stdout is not None
        bus.stdout.close()


def test_cli_round_trip_with_real_secret_service(secret_service: dict[str, str]) -> None:
    check_round_trip(secret_service, "SecretService Keyring")
