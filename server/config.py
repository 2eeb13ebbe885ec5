"""Operator settings: environment variables, overridden by CLI flags of the same meaning.

Read once at start-up and frozen, so every tool call sees the same limits. Secrets are not
settings: the API key is resolved on first use by `credentials` (env, then OS keyring).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from nonecap_mcp.x402.spend_policy import SpendPolicy

from nonecap_mcp.catalogue import CAPTCHA_TYPES
from nonecap_mcp.operator_policy import SitePolicy

from nonecap_mcp.errors import ConfigurationError

DEFAULT_API_BASE = "https://api.nonecap.com"
DEFAULT_X402_BASE = "https://api.ucaptcha.net"  # the host the x402 rail contract documents
MAX_WAIT_SECONDS = 55  # hosts cut tool calls off at about 60 s
API_MAX_WAIT_SECONDS = 90  # the API's own ?wait bound
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")  # the only hosts plain http may reach
STATE_DIR_ENV = "NONECAP_STATE_DIR"
APP_DIR = "nonecap-mcp"
LEDGER_FILE = "ledger.sqlite3"  # the x402 ledger; the other state files lie beside it
CREATES_FILE = "creates.sqlite3"  # the credits rail's create log (`create_log`)
TIME_SCALE_ENV = "NONECAP_TIME_SCALE"
# Below this, a call without a wait (10 s, scaled) would have no time left for upstream after the
# slack our own, uncompressed, work keeps (`tools.errors.INNER_SLACK_SECONDS`).
MIN_TIME_SCALE = 0.2


def time_scale(env: Mapping[str, str]) -> float:
    """``$NONECAP_TIME_SCALE``: a number from 0.2 to 1, default 1; anything else is `invalid_config`.

    A testing knob: it compresses every delay the server and its sandbox choose for themselves
    (bounds, margins, backoff, polls, leases, solve durations), so a suite or an agent's own
    tests run the real logic in a fraction of the time. Durations others choose are not scaled:
    an agent's `wait_seconds`, a test sitekey's explicit duration, the rail's advertised
    `maxTimeoutSeconds` as we sign it (chain time; the sandbox rail scales what it advertises,
    so both sides agree), Retry-After as reported to the agent (only our wait for it shrinks).
    Nor are those that are not delays: the slack kept for our own CPU work before a bound (it
    is floored, see `tools.errors`), clock-skew allowances against other machines (the Date
    header's 1 s resolution, validAfter's 10 min; the x402 expiry margin is scaled, as below 1
    the chain is the sandbox's, on this machine's clock), SQLite's lock wait, the rate window and the UTC day, the progress tick.

    Safety: below 1 `Settings` refuses to start unless every upstream is the sandbox or on this
    machine, so a real API never sees compressed bounds, backoff or Retry-After waits.
    """
    raw = env.get(TIME_SCALE_ENV, "").strip()
    try:
        scale = float(raw) if raw else 1.0
    except ValueError:
        scale = math.nan
    if not MIN_TIME_SCALE <= scale <= 1:  # also refuses nan and inf
        raise ConfigurationError("invalid_config", f"{TIME_SCALE_ENV} must be a number from {MIN_TIME_SCALE} to 1.")
    return scale


def _process_time_scale() -> float:
    try:
        return time_scale(os.environ)
    except ConfigurationError:
        return 1.0  # `load_settings` refuses it before this process serves anything


# Read once per process, from the environment it was started with: the constants that use it are
# computed at import. Real time (1) unless the operator set it; see `time_scale`.
TIME_SCALE: float = _process_time_scale()


def scaled(seconds: float) -> float:
    """`seconds` of the server's (or sandbox's) own choosing, in this process's time scale."""
    return seconds * TIME_SCALE


def state_dir(env: Mapping[str, str]) -> Path:
    """``$NONECAP_STATE_DIR``, else the XDG state dir (``$XDG_STATE_HOME`` or ``~/.local/state``)
    ``/nonecap-mcp``. Here, not in the ledger, because every start-up needs it and no more.

    A relative ``XDG_STATE_HOME`` is ignored, as the XDG spec requires.
    """
    override = env.get(STATE_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    xdg = env.get("XDG_STATE_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / APP_DIR
    home = env.get("HOME", "").strip()
    base = Path(home) if home else Path.home()
    return base / ".local" / "state" / APP_DIR


def _is_allowed_base_url(url: str) -> bool:
    """https, or plain http to this machine only; never user:pass@, which would go out with every request.

    The host is parsed, not prefix-matched: `http://localhost@evil.example` and
    `http://localhost.evil.example` both start like a local URL and are not one.
    """
    try:
        parts = urlsplit(url)
        parts.port  # reading it is what rejects a malformed port (ValueError)
    except ValueError:
        return False
    if not parts.hostname or "@" in parts.netloc:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOCAL_HOSTS)


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; each field has an env var, listed in ENV_VARS."""

    api_base: str = DEFAULT_API_BASE
    sandbox: bool = False
    default_wait_seconds: int = 25
    max_concurrency: int = 5
    max_retries: int = 2
    keyring_timeout: float = 5.0
    read_only: bool = False
    log_level: str = "WARNING"
    rail: str = "auto"
    x402_base: str = DEFAULT_X402_BASE
    x402_network: str = "base"
    max_price_usd: Decimal = Decimal("0.05")
    daily_budget_usd: Decimal = Decimal("1.00")
    confirm_above_usd: Decimal = Decimal("0.02")
    x402_pay_to: str | None = None
    base_rpc_url: str | None = None
    state_dir: str | None = None
    sandbox_url: str | None = None
    allowed_sites: str | None = None
    allowed_types: str | None = None
    daily_credit_budget: int | None = None
    max_solves_per_minute: int | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("api_base", "x402_base", "base_rpc_url", "sandbox_url"):
            value = getattr(self, name)
            if value is not None and not _is_allowed_base_url(value):
                raise ConfigurationError(
                    "invalid_config",
                    f"{ENV_VARS[name]} must be an https:// URL with a host and no user:password@ "
                    "(plain http:// only to 127.0.0.1, localhost or [::1]).",
                )
        if self.sandbox_url is not None and urlsplit(self.sandbox_url).hostname not in LOCAL_HOSTS:
            raise ConfigurationError(
                "invalid_config",
                "NONECAP_SANDBOX_URL must point at a `nonecap-mcp sandbox` on this machine (http://127.0.0.1:PORT).",
            )
        if self.state_dir is not None and not Path(self.state_dir).expanduser().is_absolute():
            # A relative directory would depend on whatever working directory the host starts us in.
            raise ConfigurationError("invalid_config", "NONECAP_STATE_DIR must be an absolute path (or start with ~).")
        if self.rail not in ("auto", "credits", "x402"):
            raise ConfigurationError("invalid_config", "NONECAP_RAIL must be auto, credits or x402.")
        try:
            self.spend_policy()
        except (TypeError, ValueError) as exc:
            raise ConfigurationError("invalid_config", f"x402 spend policy: {exc}.") from None
        if not 0 <= self.default_wait_seconds <= MAX_WAIT_SECONDS:
            raise ConfigurationError("invalid_config", f"NONECAP_DEFAULT_WAIT_SECONDS must be 0-{MAX_WAIT_SECONDS}.")
        if not 1 <= self.max_concurrency <= 100:
            raise ConfigurationError("invalid_config", "NONECAP_MAX_CONCURRENCY must be 1-100.")
        if not 0 <= self.max_retries <= 10:
            raise ConfigurationError("invalid_config", "NONECAP_MAX_RETRIES must be 0-10.")
        if not 0 < self.keyring_timeout <= 60:  # also refuses nan and inf, which would let a keyring hang every call
            raise ConfigurationError("invalid_config", "NONECAP_KEYRING_TIMEOUT must be more than 0 and at most 60 seconds.")
        try:
            sites = self.site_policy()
        except ValueError as exc:
            raise ConfigurationError("invalid_config", f"{exc}.") from None
        unknown = set(sites.allowed_types) - set(CAPTCHA_TYPES)
        if unknown:
            raise ConfigurationError("invalid_config", f"NONECAP_ALLOWED_TYPES: unknown type(s) {', '.join(sorted(unknown))}; "
                                     f"known: {', '.join(CAPTCHA_TYPES)}.")
        if self.daily_credit_budget is not None and self.daily_credit_budget < 0:
            raise ConfigurationError("invalid_config", "NONECAP_DAILY_CREDIT_BUDGET must be 0 or more.")
        if self.max_solves_per_minute is not None and not 1 <= self.max_solves_per_minute <= 10000:
            raise ConfigurationError("invalid_config", "NONECAP_MAX_SOLVES_PER_MINUTE must be 1-10000.")
        self.check_time_scale(sandboxed=self.sandbox or self.sandbox_url is not None)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigurationError("invalid_config", "NONECAP_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR.")

    def site_policy(self) -> SitePolicy:
        """The operator's allowed sites and captcha types (empty = any)."""
        return SitePolicy.parse(self.allowed_sites, self.allowed_types)

    def spend_policy(self) -> SpendPolicy:
        """The operator's x402 limits; tool arguments can never widen them."""
        from nonecap_mcp.x402.spend_policy import SpendPolicy

        return SpendPolicy(
            network=self.x402_network,
            max_price_usd=self.max_price_usd,
            daily_budget_usd=self.daily_budget_usd,
            pinned_pay_to=self.x402_pay_to,
            confirm_above_usd=self.confirm_above_usd,
        )

    def ledger_path(self) -> Path:
        """Where the x402 ledger lives: `state_dir` when set, else the XDG state directory."""
        return state_dir({**self.env, STATE_DIR_ENV: self.state_dir or ""}) / LEDGER_FILE

    def check_time_scale(self, *, sandboxed: bool) -> None:
        """Refuse compressed time (`time_scale`) toward anything but this machine.

        It checks the scale of the env these settings were loaded from, which is the process's
        (`TIME_SCALE`, read at import) for every command line; a program embedding the server
        with settings from another env must not set the variable in its own. `sandboxed` is true only where every
        upstream is replaced by the sandbox's (`serve --sandbox`, `--sandbox-url`); a command that
        uses the configured upstreams itself (doctor, auth, wallet) passes False. A compressed
        process must also keep its own state: at a fifth of real time its orphan and lease ages
        would misjudge the payments of a real server sharing the ledger."""
        if time_scale(self.env) >= 1 or sandboxed:  # read first: a malformed value is refused whatever else is set
            return
        remote = [ENV_VARS[name] for name in ("api_base", "x402_base") if urlsplit(getattr(self, name)).hostname not in LOCAL_HOSTS]
        if urlsplit(self.rpc_url()).hostname not in LOCAL_HOSTS:
            remote.append(ENV_VARS["base_rpc_url"])
        if remote:  # a real API must never see compressed timings (shorter bounds, faster retries)
            raise ConfigurationError("invalid_config", f"{TIME_SCALE_ENV} below 1 is for the sandbox or loopback "
                                     f"upstreams only; {', '.join(remote)} is not on this machine.")
        if not self.state_dir:
            raise ConfigurationError("invalid_config", f"{TIME_SCALE_ENV} below 1 needs its own {STATE_DIR_ENV}: a "
                                     "compressed process must not share the state of real servers.")

    def rpc_url(self) -> str:
        """The JSON-RPC endpoint for the wallet's USDC balance: `base_rpc_url`, else the network's public one."""
        from nonecap_mcp.x402.networks import NETWORKS

        return self.base_rpc_url or NETWORKS[self.x402_network].default_rpc_url

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given (non-None) values, e.g. from CLI flags (itself when there are none:
        a copy is validated again)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **changes) if changes else self


# Every setting: its environment variable and what it is for (the CLI makes a flag of each).
OPTIONS: dict[str, tuple[str, str]] = {
    "api_base": ("NONECAP_API_BASE", "NoneCap API base URL"),
    "sandbox": ("NONECAP_SANDBOX", "run against the built-in offline emulator (no key, no network)"),
    "default_wait_seconds": ("NONECAP_DEFAULT_WAIT_SECONDS", f"seconds a solve call waits by default, 0-{MAX_WAIT_SECONDS}"),
    "max_concurrency": ("NONECAP_MAX_CONCURRENCY", "solves in flight at once before calls queue locally"),
    "max_retries": ("NONECAP_MAX_RETRIES", "retries of a failed request"),
    "keyring_timeout": ("NONECAP_KEYRING_TIMEOUT", "seconds before a silent OS keyring is given up on"),
    "read_only": ("NONECAP_READ_ONLY", "only the tools that cannot spend"),
    "log_level": ("NONECAP_LOG_LEVEL", "stderr log level: DEBUG, INFO, WARNING or ERROR"),
    "rail": ("NONECAP_RAIL", "default payment rail: auto, credits or x402"),
    "x402_base": ("NONECAP_X402_BASE", "x402 rail base URL"),
    "x402_network": ("NONECAP_X402_NETWORK", "network whose canonical USDC x402 pays"),
    "max_price_usd": ("NONECAP_MAX_PRICE_USD", "most one x402 solve may cost, USD"),
    "daily_budget_usd": ("NONECAP_DAILY_BUDGET_USD", "most x402 may spend per UTC day, USD"),
    "confirm_above_usd": ("NONECAP_CONFIRM_ABOVE_USD", "x402 payments above this need the user's confirmation, USD"),
    "x402_pay_to": ("NONECAP_X402_PAY_TO", "pin the only address x402 may pay"),
    "base_rpc_url": ("NONECAP_BASE_RPC_URL", "JSON-RPC endpoint for the wallet's USDC balance (default: the network's public RPC)"),
    "state_dir": ("NONECAP_STATE_DIR", "directory of the x402 ledger (default ~/.local/state/nonecap-mcp)"),
    "sandbox_url": ("NONECAP_SANDBOX_URL", "attach to a running `nonecap-mcp sandbox` at this URL, so solves outlive this process"),
    "allowed_sites": ("NONECAP_ALLOWED_SITES", "hostnames and *.domain wildcards a solve may target, comma-separated (default: any)"),
    "allowed_types": ("NONECAP_ALLOWED_TYPES", "captcha types a solve may use, comma-separated (default: any)"),
    "daily_credit_budget": ("NONECAP_DAILY_CREDIT_BUDGET", "most credits solves may use per UTC day (default: no limit)"),
    "max_solves_per_minute": ("NONECAP_MAX_SOLVES_PER_MINUTE", "most solves started per minute on either rail (default: no limit)"),
}
ENV_VARS: dict[str, str] = {name: var for name, (var, _) in OPTIONS.items()}

_COUNTS = {"daily_credit_budget", "max_solves_per_minute"}  # optional whole numbers (default None)
_KIND_NAMES: dict[type, str] = {int: "a whole number", float: "a number", Decimal: "a decimal number like 0.05"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _convert(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.strip().lower() not in _TRUE | _FALSE:
            raise ConfigurationError("invalid_config", f"{ENV_VARS[name]} must be true or false.")
        return raw.strip().lower() in _TRUE
    try:
        return kind(raw.strip())
    except (ValueError, InvalidOperation):
        raise ConfigurationError("invalid_config", f"{ENV_VARS[name]} must be {_KIND_NAMES.get(kind, 'text')}.") from None


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from `env` (default: os.environ), then non-None `overrides` on top."""
    env = dict(os.environ if env is None else env)
    kinds = {f.name: int if f.name in _COUNTS else str if f.default is None else type(f.default)
             for f in fields(Settings) if f.name in ENV_VARS}
    values = {name: _convert(name, env[var], kinds[name]) for name, var in ENV_VARS.items() if env.get(var, "").strip()}
    for name in ("api_base", "x402_base", "sandbox_url"):
        if name in values:
            values[name] = values[name].rstrip("/")
    return Settings(env=env, **values).with_overrides(**overrides)
