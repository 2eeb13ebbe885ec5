"""The `nonecap-mcp` command: serve over stdio (the default), sandbox, demo, install, doctor, auth, wallet.

Only `--help` and `--version` write to stdout before serving; once serving, stdout is the
MCP protocol and every log line goes to stderr. Heavy modules (the MCP SDK, keyring,
eth-account) are imported inside the subcommand that needs them.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from nonecap_mcp import __version__
from nonecap_mcp.config import ENV_VARS, OPTIONS, Settings, load_settings
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.redaction import RedactingFormatter, redact

if TYPE_CHECKING:  # argparse loads only when there is a command line to parse (not on a bare start)
    import argparse

    import uvicorn

    from mcp.server import MCPServer

EPILOG = """\
environment: NONECAP_API_KEY (else the OS keyring; see `auth login`), NONECAP_WALLET_PRIVATE_KEY
(else NONECAP_WALLET_KEY_FILE, else the OS keyring; see `wallet`), {vars}.
First time? `nonecap-mcp demo` runs everything offline against the built-in sandbox;
`nonecap-mcp install claude-desktop` (or claude-code, cursor, vscode, windsurf) adds it to a host;
`nonecap-mcp doctor` says what works and how to fix what does not."""


METAVARS = {"x402_pay_to": "ADDRESS", "daily_credit_budget": "CREDITS", "max_solves_per_minute": "SOLVES"}


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, named after it; a flag wins over its environment variable. The
    defaults shown are the dataclass's own (no Settings is built and validated just for --help)."""
    defaults = {spec.name: spec.default for spec in dataclasses.fields(Settings)}
    for name, (var, text) in OPTIONS.items():
        default = defaults[name]
        flag = "--" + name.replace("_", "-")
        help_text = f"{text} ({var}; default {'unset' if default is None else default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const="true", help=help_text)
        else:
            parser.add_argument(flag, metavar=METAVARS.get(name, name.split("_")[-1].upper()), help=help_text)


def _serve_options(serve: argparse.ArgumentParser) -> None:
    """The options of `serve`: every setting, and how to serve."""
    _serve_flags(serve)
    serve.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP for registered clients (see `clients`)")
    serve.add_argument("--log-json", action="store_true", help="log one JSON object per line on stderr")
    serve.add_argument("--allowed-host", metavar="NAME", action="append",
                       help="a Host name the HTTP server answers to besides HOST (e.g. the reverse proxy's); repeatable")


def serve_parser() -> argparse.ArgumentParser:
    """`nonecap-mcp serve …` (and a bare `nonecap-mcp`) on its own: what a host launches on
    every session start, parsed without building the other eight commands' parsers (a third
    of our start-up's own cost when they were built every time). The same parser as the
    `serve` command of `build_parser`, so flags, errors and `--help` are the same."""
    import argparse

    serve = argparse.ArgumentParser(prog="nonecap-mcp serve", argument_default=argparse.SUPPRESS)
    _serve_options(serve)
    return serve


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, so `--help` works with nothing configured."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="nonecap-mcp",
        description="MCP server giving AI agents NoneCap captcha solving as tools.",
        epilog=EPILOG.format(vars=", ".join(sorted(ENV_VARS.values()))),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"nonecap-mcp {__version__}")
    _serve_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_options(sub.add_parser("serve", help="serve MCP over stdio (the default), or over HTTP with --http",
                                  argument_default=argparse.SUPPRESS))
    sandbox = sub.add_parser("sandbox", help="run only the offline API emulator, for testing your own clients")
    sandbox.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (default 8787)")
    sub.add_parser("demo", help="drive the server in sandbox mode as an agent would, printing each call")
    _install_commands(sub)
    doctor = sub.add_parser("doctor", help="check Python, keyring, API key, wallet, x402 rail, ledger and hosts; a fix for each failure")
    doctor.add_argument("--sandbox", action="store_true", default=False, help="check against a fresh in-process sandbox instead")
    doctor.add_argument("--json", action="store_true", default=False, help="one JSON object instead of lines")
    auth = sub.add_parser("auth", help="store, show or remove the NoneCap API key in the OS keyring")
    auth_sub = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    login = auth_sub.add_parser("login", help="store a key (prompted without echo, or read from stdin)")
    login.add_argument("--stdin", action="store_true", default=False, help="read the key from standard input")
    login.add_argument("--no-verify", action="store_true", default=False,
                       help="store without checking the key with GET /v1/me (offline)")
    auth_sub.add_parser("status", help="show where the key comes from, masked")
    auth_sub.add_parser("logout", help="remove the key from the OS keyring")
    wallet = sub.add_parser("wallet", help="the x402 wallet (USDC on Base) kept in the OS keyring")
    wallet_sub = wallet.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)
    create = wallet_sub.add_parser("create", help="make a new key; prints only its address")
    create.add_argument("--force", action="store_true", default=False, help="replace an existing key (its funds need a backup!)")
    create.add_argument("--key-file", metavar="PATH", default=None,
                        help="write the key to a new 0600 file instead of the OS keyring (for machines without one); "
                             "the server reads it through NONECAP_WALLET_KEY_FILE")
    imported = wallet_sub.add_parser("import", help="store an existing key (prompted without echo, or read from stdin)")
    imported.add_argument("--stdin", action="store_true", default=False, help="read the key from standard input")
    imported.add_argument("--force", action="store_true", default=False, help="replace a different stored key")
    wallet_sub.add_parser("show", help="address and USDC balance (NONECAP_BASE_RPC_URL)")
    wallet_sub.add_parser("remove", help="forget the key (back it up first)")
    clients = sub.add_parser("clients", help="who may call the HTTP server (`serve --http`), with their own limits")
    clients_sub = clients.add_subparsers(dest="clients_command", metavar="ACTION", required=True)
    add = clients_sub.add_parser("add", help="register a client; prints its token once, on stdout")
    add.add_argument("name")
    add.add_argument("--daily-budget-usd", default=None, help="most this client may spend on x402 per UTC day")
    add.add_argument("--daily-credit-budget", type=int, default=None, help="most credits this client may use per UTC day")
    add.add_argument("--read-only", action="store_true", default=False, help="only the tools that cannot spend")
    clients_sub.add_parser("list", help="registered clients and their limits (never a token)")
    clients_sub.add_parser("remove", help="revoke a client's token").add_argument("name")
    spend = sub.add_parser("spend", help="what agents spent per UTC day and rail, with a bar chart")
    spend.add_argument("--days", type=int, default=7, help="UTC days back, today included (default 7)")
    shape = spend.add_mutually_exclusive_group()
    shape.add_argument("--json", dest="format", action="store_const", const="json", default="table", help="as JSON")
    shape.add_argument("--csv", dest="format", action="store_const", const="csv", help="as CSV")
    return parser


def _install_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`install HOST` and `uninstall HOST`, sharing the flags that find the config file."""
    from nonecap_mcp.hosts import HOSTS
    for command, text in (("install", "add this server to an MCP host's config (merged, backed up, idempotent)"),
                          ("uninstall", "remove this server's entry from an MCP host's config, and nothing else")):
        parser = sub.add_parser(command, help=text)
        parser.add_argument("host", choices=list(HOSTS), metavar="HOST", help=", ".join(HOSTS))
        parser.add_argument("--config", metavar="PATH", default=None, help="the host's config file (default: its usual place on this OS)")
        parser.add_argument("--workspace", action="store_true", default=False, help="vscode: this folder's .vscode/mcp.json, not the user's")
        parser.add_argument("--name", default="nonecap", help="the server's name in the host (default nonecap)")
        parser.add_argument("--dry-run", action="store_true", default=False, help="print the change; write nothing")
        parser.add_argument("--force", action="store_true", default=False, help="replace or remove an entry of that name that is not ours")
        if command == "uninstall":
            continue
        parser.add_argument("--uvx", action="store_true", default=False,
                            help="run `uvx --from nonecap-mcp==<this version> nonecap-mcp` instead of this installation")
        parser.add_argument("--uvx-from", metavar="SPEC", default=None,
                            help="with --uvx: another package spec for uvx --from (a wheel path, a version)")
        parser.add_argument("--sandbox", action="store_true", default=False, help="the entry serves the offline sandbox")
        parser.add_argument("--read-only", action="store_true", default=False, help="the entry serves only the tools that cannot spend")
        parser.add_argument("--rail", choices=("auto", "credits", "x402"), default=None, help="the entry's default payment rail")
        parser.add_argument("--wallet-key-file", metavar="PATH", default=None,
                            help="pass NONECAP_WALLET_KEY_FILE=PATH (see `wallet create --key-file`)")
        parser.add_argument("--write-api-key-to-config", action="store_true", default=False,
                            help="write the API key (NONECAP_API_KEY, else the keyring) into the config file in plain text")


def _install_options(args: argparse.Namespace):  # noqa: ANN202 - InstallOptions, imported lazily
    from pathlib import Path

    from nonecap_mcp.hosts import HOSTS
    from nonecap_mcp.install import InstallOptions, default_uvx_spec

    uvx = (getattr(args, "uvx_from", None) or default_uvx_spec()) if getattr(args, "uvx", False) else None
    return InstallOptions(
        host=HOSTS[args.host], name=args.name, config=Path(args.config) if args.config else None,
        workspace=args.workspace, uvx=uvx,
        sandbox=getattr(args, "sandbox", False), read_only=getattr(args, "read_only", False), rail=getattr(args, "rail", None),
        wallet_key_file=getattr(args, "wallet_key_file", None),
        write_api_key_to_config=getattr(args, "write_api_key_to_config", False), dry_run=args.dry_run, force=args.force,
    )


class JsonLogFormatter(RedactingFormatter):
    """One JSON object per line (for a log shipper), redacted like every other log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry))


def setup_logging(level: str, *, as_json: bool = False) -> None:
    """Log to stderr only, redacted; installed before the SDK's own basicConfig can run."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter() if as_json else RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level.upper())  # a client's logging/setLevel may lower our loggers, not stderr
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every URL at INFO; an RPC provider's URL often carries its API key.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))


def _settings(args: argparse.Namespace | SimpleNamespace) -> Settings:
    """Settings from the environment with the given flags laid over it."""
    flags = {var: str(getattr(args, name)) for name, (var, _) in OPTIONS.items() if hasattr(args, name)}
    return load_settings(os.environ | flags)


def serve(settings: Settings, *, log_json: bool = False) -> int:
    """Serve MCP over stdio until the host closes the pipe."""
    setup_logging(settings.log_level, as_json=log_json)
    stdio_server(settings).run("stdio")
    return 0


@contextmanager
def _built_with_collector_paused() -> Iterator[None]:
    """Build a long-lived server with the cyclic garbage collector paused, then freeze it.

    Building imports the SDK, pydantic and their schemas (for HTTP also starlette and uvicorn):
    some hundred thousand objects that live as long as the process and leave a few hundred of
    garbage. The collector would traverse them some 200 times while they load and once more
    at exit, 8% of a bare start's instructions (callgrind). So it is paused meanwhile, and what
    was built is frozen (`gc.freeze`: moved to the permanent generation, left out of every later
    collection); whatever a call allocates is collected as usual."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def stdio_server(settings: Settings) -> MCPServer:
    """The server a host launches (see `_built_with_collector_paused`)."""
    with _built_with_collector_paused():
        from nonecap_mcp.tools import build_server

        return build_server(settings)


def serve_http(settings: Settings, address: str, allowed_hosts: tuple[str, ...], *, log_json: bool = False) -> int:
    """Serve MCP over streamable HTTP to the clients registered with `clients add`."""
    if not address.rpartition(":")[2].isdigit():
        raise ConfigurationError("invalid_config", "--http takes HOST:PORT, e.g. 127.0.0.1:8765.")
    setup_logging(settings.log_level, as_json=log_json)
    server = http_server(settings, address, allowed_hosts)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 3  # uvicorn.run's STARTUP_FAILURE: the port was taken, say


def http_server(settings: Settings, address: str, allowed_hosts: tuple[str, ...]) -> uvicorn.Server:
    """The team server `serve --http` runs (see `_built_with_collector_paused`), not yet started."""
    with _built_with_collector_paused():
        from nonecap_mcp.clients import ClientRegistry
        from nonecap_mcp.store import database_for
        from nonecap_mcp.tools.http import http_server as build

        return build(settings, address, ClientRegistry(database_for(settings)), allowed_hosts)


def run_sandbox(port: int) -> int:
    """Run the emulator in the foreground until Ctrl-C."""
    import time

    from nonecap_mcp.sandbox import TEST_SITEKEYS, Sandbox

    setup_logging("INFO")
    with Sandbox(port=port) as sandbox:
        print(f"NoneCap sandbox on {sandbox.url}  (API key: {sandbox.api_key})", file=sys.stderr)
        print(f"Servers share it with: nonecap-mcp serve --sandbox-url {sandbox.url}", file=sys.stderr)
        for sitekey, outcome in TEST_SITEKEYS.items():
            print(f"  {sitekey:<32} {outcome}", file=sys.stderr)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m nonecap_mcp`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args: Any
    if not argv:  # how hosts launch it: the environment is the whole configuration, nothing to parse
        args = SimpleNamespace()
    elif argv[0] == "serve":
        args = serve_parser().parse_args(argv[1:])
    else:
        args = build_parser().parse_args(argv)
    command = getattr(args, "command", None) or "serve"
    try:
        if command in ("auth", "wallet") or (command == "doctor" and not args.sandbox):
            load_settings().check_time_scale(sandboxed=False)  # these reach the configured upstreams themselves
        if command == "auth":
            from nonecap_mcp import auth_cli

            if args.auth_command == "login":
                return auth_cli.login(from_stdin=args.stdin, verify=not args.no_verify)
            return auth_cli.status() if args.auth_command == "status" else auth_cli.logout()
        if command == "wallet":
            from nonecap_mcp import wallet_cli

            action = args.wallet_command
            if action == "create":
                return wallet_cli.create(force=args.force, key_file=args.key_file)
            if action == "import":
                return wallet_cli.import_key(from_stdin=args.stdin, force=args.force)
            return wallet_cli.show() if action == "show" else wallet_cli.remove()
        if command in ("install", "uninstall"):
            from nonecap_mcp import install
            from nonecap_mcp.cli_io import Console

            run = install.install if command == "install" else install.uninstall
            try:
                return run(_install_options(args), Console.of())
            except install.InstallError as exc:
                print(f"Error: {exc}", file=sys.stderr)
                return 1
        if command == "doctor":
            from nonecap_mcp.doctor import run_doctor

            return run_doctor(sandbox=args.sandbox, as_json=args.json)
        if command == "demo":
            from nonecap_mcp.demo import run_demo

            return run_demo()
        if command == "sandbox":
            return run_sandbox(args.port)
        if command == "spend":
            from nonecap_mcp.spend import run_spend

            if args.days < 1:
                print("Error: --days must be 1 or more.", file=sys.stderr)
                return 2
            return run_spend(load_settings(), args.days, args.format, sys.stdout)
        if command == "clients":
            from nonecap_mcp import clients_cli

            return clients_cli.run(args)
        log_json = getattr(args, "log_json", False)
        if getattr(args, "http", None):
            return serve_http(_settings(args), args.http, tuple(getattr(args, "allowed_host", None) or ()), log_json=log_json)
        return serve(_settings(args), log_json=log_json)
    except ConfigurationError as exc:
        print(f"nonecap-mcp: {exc.message}", file=sys.stderr)
        return 2
