"""The `nonecap-mcp` command: serve over stdio (the default), sandbox, demo and auth.

Only `--help` and `--version` write to stdout before serving; once serving, stdout is the
MCP protocol and every log line goes to stderr. Heavy modules (the MCP SDK, keyring,
eth-account) are imported inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from nonecap_mcp import __version__
from nonecap_mcp.config import ENV_VARS, OPTIONS, Settings, load_settings
from nonecap_mcp.errors import ConfigurationError
from nonecap_mcp.redaction import RedactingFormatter

EPILOG = """\
environment: NONECAP_API_KEY (else the OS keyring; see `auth login`), NONECAP_WALLET_PRIVATE_KEY
(else the OS keyring; see `wallet`), NONECAP_BASE_RPC_URL, NONECAP_STATE_DIR, {vars}.
First time? `nonecap-mcp demo` runs everything offline against the built-in sandbox."""


def _serve_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, named after it; a flag wins over its environment variable."""
    defaults = Settings()
    for name, (var, text) in OPTIONS.items():
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        help_text = f"{text} ({var}; default {default})"
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const="true", help=help_text)
        else:
            parser.add_argument(flag, metavar="ADDRESS" if name.endswith("pay_to") else name.split("_")[-1].upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, so `--help` works with nothing configured."""
    parser = argparse.ArgumentParser(
        prog="nonecap-mcp",
        description="MCP server giving AI agents NoneCap hCaptcha solving as tools.",
        epilog=EPILOG.format(vars=", ".join(sorted(ENV_VARS.values()))),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"nonecap-mcp {__version__}")
    _serve_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _serve_flags(sub.add_parser("serve", help="serve MCP over stdio (the default)", argument_default=argparse.SUPPRESS))
    sandbox = sub.add_parser("sandbox", help="run only the offline API emulator, for testing your own clients")
    sandbox.add_argument("--port", type=int, default=8787, help="port on 127.0.0.1 (default 8787)")
    sub.add_parser("demo", help="drive the server in sandbox mode as an agent would, printing each call")
    auth = sub.add_parser("auth", help="store, show or remove the NoneCap API key in the OS keyring")
    auth_sub = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    login = auth_sub.add_parser("login", help="store a key (prompted without echo, or read from stdin)")
    login.add_argument("--stdin", action="store_true", default=False, help="read the key from standard input")
    auth_sub.add_parser("status", help="show where the key comes from, masked")
    auth_sub.add_parser("logout", help="remove the key from the OS keyring")
    wallet = sub.add_parser("wallet", help="the x402 wallet (USDC on Base) kept in the OS keyring")
    wallet_sub = wallet.add_subparsers(dest="wallet_command", metavar="ACTION", required=True)
    create = wallet_sub.add_parser("create", help="make a new key; prints only its address")
    create.add_argument("--force", action="store_true", default=False, help="replace an existing key (its funds need a backup!)")
    imported = wallet_sub.add_parser("import", help="store an existing key (prompted without echo, or read from stdin)")
    imported.add_argument("--stdin", action="store_true", default=False, help="read the key from standard input")
    imported.add_argument("--force", action="store_true", default=False, help="replace a different stored key")
    wallet_sub.add_parser("show", help="address and USDC balance (NONECAP_BASE_RPC_URL)")
    wallet_sub.add_parser("remove", help="forget the key (back it up first)")
    return parser


def setup_logging(level: str) -> None:
    """Log to stderr only, redacted; installed before the SDK's own basicConfig can run."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level.upper())  # a client's logging/setLevel may lower our loggers, not stderr
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every URL at INFO; an RPC provider's URL often carries its API key.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))


def _settings(args: argparse.Namespace) -> Settings:
    """Settings from the environment with the given flags laid over it."""
    flags = {var: str(getattr(args, name)) for name, (var, _) in OPTIONS.items() if hasattr(args, name)}
    return load_settings(os.environ | flags)


def serve(settings: Settings) -> int:
    """Serve MCP over stdio until the host closes the pipe."""
    from nonecap_mcp.tools import build_server

    setup_logging(settings.log_level)
    build_server(settings).run("stdio")
    return 0


def run_sandbox(port: int) -> int:
    """Run the emulator in the foreground until Ctrl-C."""
    import time

    from nonecap_mcp.sandbox import TEST_SITEKEYS, Sandbox

    setup_logging("INFO")
    with Sandbox(port=port) as sandbox:
        print(f"NoneCap sandbox on {sandbox.url}  (API key: {sandbox.api_key})", file=sys.stderr)
        for sitekey, outcome in TEST_SITEKEYS.items():
            print(f"  {sitekey:<32} {outcome}", file=sys.stderr)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of `python -m nonecap_mcp`."""
    args = build_parser().parse_args(argv)
    command = getattr(args, "command", None) or "serve"
    try:
        if command == "auth":
            from nonecap_mcp import auth_cli

            if args.auth_command == "login":
                return auth_cli.login(from_stdin=args.stdin)
            return auth_cli.status() if args.auth_command == "status" else auth_cli.logout()
        if command == "wallet":
            from nonecap_mcp import wallet_cli

            action = args.wallet_command
            if action == "create":
                return wallet_cli.create(force=args.force)
            if action == "import":
                return wallet_cli.import_key(from_stdin=args.stdin, force=args.force)
            return wallet_cli.show() if action == "show" else wallet_cli.remove()
        if command == "demo":
            from nonecap_mcp.demo import run_demo

            return run_demo()
        if command == "sandbox":
            return run_sandbox(args.port)
        return serve(_settings(args))
    except ConfigurationError as exc:
        print(f"nonecap-mcp: {exc.message}", file=sys.stderr)
        return 2
