"""Shared fixtures: a real sandbox HTTP server on 127.0.0.1 and real MCP clients against it.

Nothing here patches the code under test. Every test also runs a leak check: whatever it
captured (tool results, logs, stdout/stderr) must not contain a registered secret.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.types import CallToolResult

# Keep pytest's assertion-rewritten test modules on disk (`__pycache__`), as pytest does unless told
# not to write bytecode: where PYTHONDONTWRITEBYTECODE is set (this CI's environment) each xdist worker,
# which imports every test module, rewrote them all on every run (~3 s of CPU per worker).
sys.dont_write_bytecode = False

# The suite runs in compressed time: every delay the server and the sandbox choose for themselves
# (bounds, margins, backoff, polls, solve durations; see `config.time_scale`) is this fraction of
# the real one, in this process and in every process a test starts against the sandbox or a hostile
# upstream (`SCALE_ENV`, in `sandbox_env` and `hostile_env`). Each process reads it once, at import,
# so it is set just for that and then taken out of the environment: a CLI command or a server a test
# starts with real upstreams inherits real time, as a user's would. `NONECAP_TIME_SCALE=1 pytest` runs
# the whole suite in real time (kept for the xdist workers in `_SUITE_SCALE`); the promises themselves
# are also proven at real values by the few tests marked `real_time`.
_SUITE_SCALE = "NONECAP_SUITE_TIME_SCALE"
os.environ["NONECAP_TIME_SCALE"] = os.environ.setdefault(_SUITE_SCALE, os.environ.get("NONECAP_TIME_SCALE") or "0.2")

from nonecap_mcp.config import TIME_SCALE_ENV, Settings, load_settings, scaled  # noqa: E402, F401 - tests bound waits with scaled(real seconds)
from nonecap_mcp.sandbox import SANDBOX_API_KEY, SANDBOX_WALLET_KEY, Sandbox  # noqa: E402
from nonecap_mcp.tools import build_server  # noqa: E402

# The developer's real keyring must never feed the tests (nor the tests write to it).
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
# Nor their state directory: a server or CLI process started without NONECAP_STATE_DIR lands here.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="nonecap-tests-xdg-state-")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # test helpers, e.g. keyring_backends

SCALE_ENV = {TIME_SCALE_ENV: os.environ.pop(TIME_SCALE_ENV)}  # for a process a test starts against the sandbox
REAL_TIME_ENV = {TIME_SCALE_ENV: "1"}  # for a `real_time` test's server: the promise at its real values


def unscaled(seconds: float) -> float:
    """The real-time figure `scaled` turns into `seconds`: e.g. the Retry-After that costs a call
    `seconds` of compressed time."""
    return seconds / scaled(1)


PROXY_PASSWORD = "pr0xy-s3cret-pw"
SECRETS: list[str] = [SANDBOX_API_KEY, PROXY_PASSWORD, SANDBOX_WALLET_KEY, SANDBOX_WALLET_KEY.removeprefix("0x")]
CAPTURED: list[str] = []  # every tool result a test produced, as text
STATE_DIR: list[Path] = []  # this test's own state directory (ledger, create log, quota)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _wallet_library_loaded() -> None:
    """The in-process servers share this process's imports. A server imports eth_account (~1 s of
    CPU) at its wallet's first use, by design not at start-up; imported once per process that runs
    tests (not in the xdist controller, which runs none), that cost never falls inside one test's
    compressed bound (4 s) on a busy box. Servers the tests spawn still pay it."""
    import eth_account  # noqa: F401


@pytest.fixture(scope="session")
def _sandbox_server() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One real PostgreSQL for the session (skipped with a reason where its binaries are missing):
    under xdist, the controller's, shared by every worker."""
    from postgres import postgres_cluster, shared_cluster_url

    shared = shared_cluster_url()
    if shared is not None:
        yield shared
        return
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a behavioural store test keeps its records: a SQLite file, or a fresh schema of a
    real PostgreSQL (so each suite runs against both engines)."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "records.sqlite3")
    from postgres import schema_url

    return schema_url(request.getfixturevalue("postgres_url"), request.node.nodeid)


@pytest.fixture
def sandbox(_sandbox_server: Sandbox, _test_state_dir: None) -> Sandbox:
    """The shared emulator, reset to 100 credits, no solves, no faults, empty request log."""
    _sandbox_server.reset()
    return _sandbox_server


def sandbox_env(sandbox: Sandbox, **extra: str) -> dict[str, str]:
    """The environment a host would give the server to talk to this sandbox."""
    return {
        "NONECAP_API_KEY": SANDBOX_API_KEY,
        "NONECAP_API_BASE": sandbox.url,
        "NONECAP_X402_BASE": sandbox.url,  # tests never reach past 127.0.0.1
        "NONECAP_BASE_RPC_URL": f"{sandbox.url}/rpc",
        "NONECAP_STATE_DIR": str(STATE_DIR[-1]),  # never the developer's ~/.local/state
        **SCALE_ENV,
        **extra,
    }


@pytest.fixture
def settings(sandbox: Sandbox) -> Settings:
    return load_settings(sandbox_env(sandbox))


def record(result: CallToolResult) -> CallToolResult:
    """Keep a tool result for the leak check and return it."""
    CAPTURED.append(json.dumps(result.model_dump(mode="json")))
    return result


class Agent:
    """A thin wrapper over the real MCP `Client` that records what it saw."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> CallToolResult:
        return record(await self.client.call_tool(name, arguments or {}, **kwargs))

    async def ok(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Call and insist on success; return the structured content."""
        result = await self.call(name, arguments, **kwargs)
        assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
        assert result.structured_content is not None
        return result.structured_content

    async def error(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Call and insist on a tool error; return its text."""
        result = await self.call(name, arguments, **kwargs)
        assert result.is_error, result.structured_content
        return result.content[0].text  # type: ignore[union-attr]


def starved_seconds() -> float:
    """Seconds this process's main thread (the event loop of every in-process test) has spent ready
    to run but waiting for a CPU: the kernel's scheduler statistics, 0 where it keeps none."""
    try:
        return int(Path(f"/proc/{os.getpid()}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass(frozen=True)
class Timed:
    """One tool call's outcome and how long it took, and how much of that the box denied it a CPU."""

    seconds: float
    starved: float
    is_error: bool
    text: str

    def within(self, bound: float) -> bool:
        """Whether the call came back within `bound` in the time it was given to run. In compressed
        time a bound is a few seconds, and a box running more workers than cores can starve the event
        loop for as long: that wait is the box's, not the server's, up to half the bound (so a bound
        overshot 1.5x fails however busy the box). A missing bound still fails (an upstream stall
        outlasts any bound), and on an idle box this is the bound itself; the figures at their real
        values are proven by the `real_time` tests."""
        return self.seconds - min(self.starved, bound / 2) < bound


async def timed(agent: Agent, name: str, arguments: dict[str, Any]) -> Timed:
    """Call a tool, timing it (see `Timed`)."""
    started, starved = time.monotonic(), starved_seconds()
    result = await agent.call(name, arguments)
    return Timed(time.monotonic() - started, starved_seconds() - starved, bool(result.is_error), result.content[0].text)  # type: ignore[union-attr]


PAGE_URL = "https://shop.example/login"


def solve_args(sitekey: str, **extra: Any) -> dict[str, Any]:
    """create_solve's arguments for an hCaptcha on one page, the sandbox's behaviour picked by `sitekey`."""
    return {"type": "hcaptcha", "sitekey": sitekey, "url": PAGE_URL, **extra}


def upstream(sandbox: Sandbox, method: str | None = None, path: str | None = None) -> list[Any]:
    """What the sandbox received, optionally only one method and path."""
    return [r for r in sandbox.requests if (method is None or r.method == method) and (path is None or r.path == path)]


async def balance(agent: Agent) -> int:
    """The account's credits, through get_balance."""
    return (await agent.ok("get_balance"))["credits_balance"]


# For tests of the rails' own logic (slots, reconciliation, payments), which the protocol era cannot
# change: one era suffices, that of today's desktop hosts. Both eras are proven wherever the era
# matters (the tools' surface, results, errors, progress and host cancellation).
one_era = pytest.mark.parametrize("mode", ["legacy"])


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both protocol eras: 2026-07-28 (the SDK default) and 2025-11-25 (today's desktop hosts)."""
    return request.param


@pytest.fixture
async def agent(settings: Settings, mode: str) -> AsyncIterator[Agent]:
    async with Client(build_server(settings), mode=mode) as client:
        yield Agent(client)


@pytest.fixture(scope="session", autouse=True)
def _session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The state directory of fixtures wider than one test (module- or session-scoped servers)."""
    STATE_DIR.append(tmp_path_factory.mktemp("session-state"))
    yield
    STATE_DIR.pop()


@pytest.fixture(autouse=True)
def _test_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test gets a fresh state directory, so no test reads another's (or the user's) ledger."""
    STATE_DIR.append(tmp_path_factory.mktemp("state"))
    yield
    STATE_DIR.pop()


@pytest.fixture(autouse=True)
def leak_check(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Fail a test whose results, logs or output contain a secret."""
    caplog.set_level(logging.DEBUG)
    CAPTURED.clear()
    yield
    out, err = capfd.readouterr()
    haystack = "\n".join([*CAPTURED, caplog.text, out, err])
    for secret in SECRETS:
        assert secret not in haystack, "a secret leaked into tool results, logs or output"
    sys.stdout.write(out)
    sys.stderr.write(err)


def cut_in_flight(send: Callable[[], httpx.Response], cut: Callable[[], None]) -> object:
    """Run `send` in a thread and `cut` (a sandbox reset or stop) while it is in flight. Returns
    the status it got, or the type of the transport error that ended it; asserts the cut ended
    it at once (within 2 s), whatever it was waiting for."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(send().status_code)
        except httpx.TransportError as error:
            outcome.append(type(error))

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    cut()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2
    return outcome[0]


# The order xdist hands modules out in (--dist loadscope, --no-loadscope-reorder): the long ones
# first, so that no worker runs a long module alone at the end, alternating between those that
# mostly wait on real time (bound and cap tests, solve durations) and those that mostly compute
# (spawned servers, builds), so that the box's two cores stay busy while the waiters sleep.
# test_real_clients and test_bundle come once the first wave is under way: in a fresh clone, the
# background `npm ci` they wait on (`npm_packages.install_in_background`) has finished by then.
# Measured with the timeline of `--durations`; a module missing here runs after these.
MODULE_ORDER = (
    "test_bounds", "test_replicas", "test_credits_concurrency", "test_cli", "test_x402_cap", "test_tools_credits",
    "test_bundle", "test_tools_x402", "test_real_clients", "test_creates", "test_packaging", "test_payments_truth",
    "test_stdio", "test_x402_types", "test_credentials", "test_live_api", "test_config", "test_http", "test_doctor",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(MODULE_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: each module keeps its order


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package once, before any worker starts: the suite spawns ~150 server and CLI
    processes, and where PYTHONDONTWRITEBYTECODE is set (this CI's environment) each would compile
    our sources again, as no installed copy ever does (pip compiles a wheel at install). A whole-suite
    run starts installing the pinned JS packages in the background (`npm_packages`); under xdist,
    start the one PostgreSQL the workers share."""
    if not hasattr(config, "workerinput"):  # the xdist controller (or a run without xdist)
        import compileall

        if config.args_source is pytest.Config.ArgsSource.TESTPATHS:  # the whole suite, as CI runs it
            from npm_packages import install_in_background

            if (installing := install_in_background()) is not None:
                config.add_cleanup(installing.join)

        for package in ("server", "tools"):
            compileall.compile_dir(ROOT / package, quiet=1)
        if getattr(config.option, "numprocesses", None):
            from postgres import SHARED_ENV, SharedCluster

            cluster = SharedCluster()
            os.environ[SHARED_ENV] = str(cluster.file)  # inherited by the workers, which start after this
            config.add_cleanup(cluster.close)
