"""``nonecap-mcp install|uninstall HOST``: put this server into an MCP host's config, or take it out.

Every supported host keeps its servers in a JSON file under one key (``mcpServers``, or
``servers`` for VS Code). We merge our one entry into that file and touch nothing else:
other servers, unknown keys and their values survive; the previous file is kept as a
timestamped ``.bak``; a file we cannot parse (JSONC with comments, say) is never rewritten,
since a rewrite would lose what we did not understand. Running it twice changes nothing.

The entry runs the absolute path of *this* installation's console script, because GUI hosts
start servers with a minimal ``PATH``. No secret goes into a config file unless the user asks
for it with a flag that says so (``--write-api-key-to-config``), and then with a warning.
For Claude Code the ``claude`` CLI does the writing when it is on ``PATH``.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nonecap_mcp import __version__
from nonecap_mcp.cli_io import Console
from nonecap_mcp.hosts import HOSTS, Host

__all__ = ["HOSTS", "Host", "InstallError", "InstallOptions", "default_config_path", "installed_entries", "install", "uninstall"]

API_KEY_ENV = "NONECAP_API_KEY"
WALLET_KEY_FILE_ENV = "NONECAP_WALLET_KEY_FILE"


class InstallError(Exception):
    """A config we must not or cannot change; the message says why and what to do instead."""


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())


def _app_config_dir(env: Mapping[str, str], platform: str) -> Path:
    """Where desktop apps keep per-user settings: Application Support, %APPDATA% or XDG."""
    home = _home(env)
    if platform == "darwin":
        return home / "Library" / "Application Support"
    if platform == "win32":
        return Path(env.get("APPDATA") or home / "AppData" / "Roaming")
    xdg = env.get("XDG_CONFIG_HOME", "")
    return Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"


def default_config_path(host: Host, env: Mapping[str, str], platform: str = sys.platform,
                        *, workspace: Path | None = None) -> Path:
    """The host's user-level config file on this OS (VS Code: the workspace's with ``workspace``)."""
    home = _home(env)
    if host.name == "claude-desktop":
        return _app_config_dir(env, platform) / "Claude" / "claude_desktop_config.json"
    if host.name == "claude-code":
        return home / ".claude.json"
    if host.name == "cursor":
        return home / ".cursor" / "mcp.json"
    if host.name == "vscode":
        if workspace is not None:
            return workspace / ".vscode" / "mcp.json"
        return _app_config_dir(env, platform) / "Code" / "User" / "mcp.json"
    return home / ".codeium" / "windsurf" / "mcp_config.json"


@dataclass(frozen=True)
class InstallOptions:
    """What the user asked for on the command line."""

    host: Host
    name: str = "nonecap"
    config: Path | None = None
    workspace: bool = False
    uvx: str | None = None  # a package spec for `uvx --from`, instead of this installation
    sandbox: bool = False
    read_only: bool = False
    rail: str | None = None
    wallet_key_file: str | None = None
    write_api_key_to_config: bool = False
    dry_run: bool = False
    force: bool = False


def server_command(uvx: str | None, env: Mapping[str, str]) -> list[str]:
    """argv that starts this server: the absolute console script of this installation
    (a venv's ``bin`` is next to its ``python``), ``python -m`` without one, or uvx."""
    if uvx is not None:
        return [shutil.which("uvx", path=env.get("PATH")) or "uvx", "--from", uvx, "nonecap-mcp"]
    script = shutil.which("nonecap-mcp", path=str(Path(sys.executable).parent))
    if script:
        return [str(Path(script).absolute())]
    return [sys.executable, "-m", "nonecap_mcp"]


def default_uvx_spec() -> str:
    """The published package at this very version, so uvx runs what was tested here."""
    return f"nonecap-mcp=={__version__}"


def input_id(name: str) -> str:
    return f"{name}-api-key"


def build_entry(options: InstallOptions, env: Mapping[str, str], api_key: str | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Our server entry, and for VS Code the password input that asks for the key."""
    argv = server_command(options.uvx, env) + ["serve"]
    argv += ["--sandbox"] if options.sandbox else []
    argv += ["--read-only"] if options.read_only else []
    argv += ["--rail", options.rail] if options.rail else []
    entry: dict[str, Any] = {"type": "stdio"} if options.host.typed else {}
    entry |= {"command": argv[0], "args": argv[1:]}
    server_env: dict[str, str] = {}
    prompt = None
    if options.wallet_key_file:
        server_env[WALLET_KEY_FILE_ENV] = str(Path(options.wallet_key_file).expanduser().absolute())
    if api_key is not None:
        server_env[API_KEY_ENV] = api_key
    elif options.host.name == "vscode" and not options.sandbox:
        # VS Code keeps a password input in its secret storage; left empty, the keyring is used.
        prompt = {"type": "promptString", "id": input_id(options.name), "password": True,
                  "description": "NoneCap API key (nc_live_...); leave empty to use the OS keyring"}
        server_env[API_KEY_ENV] = "${input:" + input_id(options.name) + "}"
    if server_env:
        entry["env"] = server_env
    return entry, prompt


def is_ours(entry: Any) -> bool:
    """Whether a server entry runs nonecap-mcp (by any of the commands install writes)."""
    if not isinstance(entry, dict):
        return False
    words = [entry.get("command", "")] + list(entry.get("args") or [])
    return any(isinstance(w, str) and ("nonecap-mcp" in w or "nonecap_mcp" in w) for w in words)


def load_config(path: Path, host: Host) -> dict[str, Any]:
    """The parsed config (``{}`` when absent or empty); refuses anything it could not write back faithfully."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InstallError(
            f"{path} is not plain JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}), so it was not changed. "
            "If it has comments or trailing commas (JSONC), a rewrite would lose them: add the entry below by hand, "
            "or fix the file and run this again."
        ) from None
    if not isinstance(config, dict):
        raise InstallError(f"{path} does not hold a JSON object, so it was not changed.")
    if not isinstance(config.get(host.servers_key, {}), dict):
        raise InstallError(f'"{host.servers_key}" in {path} is not an object, so it was not changed.')
    return config


def _dump(config: Mapping[str, Any]) -> str:
    return json.dumps(config, indent=2, ensure_ascii=False) + "\n"


def _masked(value: Any) -> Any:
    """A copy for the terminal: an API key in any ``env`` shows as ``nc_live_…abcd``."""
    from nonecap_mcp.credentials import mask_api_key

    if isinstance(value, dict):
        return {k: mask_api_key(v) if k == API_KEY_ENV and isinstance(v, str) and not v.startswith("${")
                else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _diff(path: Path, before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    before, after = _masked(before), _masked(after)
    lines = difflib.unified_diff(_dump(before).splitlines(True), _dump(after).splitlines(True),
                                 fromfile=f"{path} (now)", tofile=f"{path} (after)")
    return "".join(lines)


def write_config(path: Path, config: Mapping[str, Any], *, secret: bool) -> Path | None:
    """Replace ``path`` atomically (same directory, fsync, rename), keeping the old file
    as ``<name>.<timestamp>.bak``. Returns the backup's path, ``None`` for a new file.

    The mode of an existing file is kept (``~/.claude.json`` is private); a file that
    now holds a secret is made 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    mode = 0o600 if secret else 0o644
    if path.exists():
        mode = path.stat().st_mode & 0o777 & (0o600 if secret else 0o777)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = path.with_name(f"{path.name}.{stamp}.bak")
        n = 1
        while backup.exists():
            backup, n = path.with_name(f"{path.name}.{stamp}-{n}.bak"), n + 1
        shutil.copy2(path, backup)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_dump(config))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup


def _api_key_for_config(console: Console) -> str:
    """The key the user asked to write: NONECAP_API_KEY, else the OS keyring."""
    from nonecap_mcp import keystore
    from nonecap_mcp.credentials import (
        API_KEY_NAME,
        NO_KEY_MESSAGE,
        CredentialError,
        api_key_from_env,
        check_api_key_format,
    )

    try:
        from_env = api_key_from_env(console.env)
        if from_env is not None:
            return from_env.reveal()
        stored = keystore.read_secret_sync(API_KEY_NAME, timeout=keystore.CLI_TIMEOUT)
        if stored is None or not stored.strip():
            raise InstallError(NO_KEY_MESSAGE)
        return check_api_key_format(stored, source="the OS keyring")
    except (CredentialError, keystore.KeystoreError) as exc:
        raise InstallError(str(exc)) from None


def _config_path(options: InstallOptions, env: Mapping[str, str]) -> Path:
    if options.config is not None:
        return options.config.expanduser().absolute()
    return default_config_path(options.host, env, workspace=Path.cwd() if options.workspace else None)


def _claude_cli(options: InstallOptions, env: Mapping[str, str]) -> str | None:
    """``claude`` when it should do the writing: on PATH, no explicit file, no secret
    (``claude mcp add -e KEY=…`` would put the key on a command line other users can see)."""
    if options.host.name != "claude-code" or options.config is not None or options.write_api_key_to_config:
        return None
    return shutil.which("claude", path=env.get("PATH"))


def _show(console: Console, text: str) -> None:
    print(text, file=console.stdout, end="" if text.endswith("\n") else "\n")


def _run_claude(console: Console, argv: Sequence[str], dry_run: bool) -> int:
    shown = " ".join(argv)
    if dry_run:
        _show(console, f"would run: {shown}")
        return 0
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        console.error(f"`{shown}` failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[:500]}")
        return 1
    _show(console, f"ran: {shown}")
    return 0


def install(options: InstallOptions, console: Console) -> int:
    """Add (or update) our entry in the host's config. Exit 0 done or nothing to do, 1 refused."""
    env = console.env
    path = _config_path(options, env)
    api_key = _api_key_for_config(console) if options.write_api_key_to_config else None
    entry, prompt = build_entry(options, env, api_key)
    try:
        config = load_config(path, options.host)
    except InstallError as exc:
        console.error(str(exc))
        _show(console, json.dumps({options.host.servers_key: {options.name: _masked(entry)}}, indent=2))
        return 1
    servers = config.get(options.host.servers_key, {})
    existing = servers.get(options.name)
    if existing is not None and not is_ours(existing) and not options.force:
        console.error(f'{path} already has a server named "{options.name}" that does not run nonecap-mcp; nothing '
                      "was changed. Pick another --name, or pass --force to replace it.")
        return 1
    claude = _claude_cli(options, env)
    if claude is not None:
        if existing == entry:
            _show(console, f'{options.host.title} already has "{options.name}" as it would be written; nothing changed.')
            return 0
        if existing is not None and _run_claude(console, [claude, "mcp", "remove", "--scope", "user", options.name], options.dry_run):
            return 1
        flags = [word for k, v in entry.get("env", {}).items() for word in ("-e", f"{k}={v}")]
        argv = [claude, "mcp", "add", "--scope", "user", *flags, options.name, "--", entry["command"], *entry["args"]]
        code = _run_claude(console, argv, options.dry_run)
        if code == 0 and not options.dry_run:
            _show(console, options.host.restart)
        return code

    updated = copy.deepcopy(config)
    updated.setdefault(options.host.servers_key, {})[options.name] = entry
    if prompt is not None:
        inputs = [i for i in updated.get("inputs", []) if not (isinstance(i, dict) and i.get("id") == prompt["id"])]
        updated["inputs"] = [*inputs, prompt]
    if updated == config:
        _show(console, f'{options.host.title} already has "{options.name}" in {path}; nothing changed.')
        return 0
    if options.dry_run:
        _show(console, _diff(path, config, updated))
        _show(console, "dry run: nothing was written.")
        return 0
    if api_key is not None:
        console.note(f"the API key is now written in plain text in {path} (made 0600). Anyone who can read that file, "
                     "or a backup of it, can spend your credits. `nonecap-mcp auth login` keeps it in the OS keyring instead.")
    backup = write_config(path, updated, secret=api_key is not None)
    verb = "Updated" if existing is not None else "Added"
    _show(console, f'{verb} "{options.name}" in {options.host.title}\'s config {path}:')
    _show(console, json.dumps({options.name: _masked(entry)}, indent=2))
    if backup is not None:
        _show(console, f"The previous file is kept as {backup}.")
    _show(console, options.host.restart)
    return 0


def uninstall(options: InstallOptions, console: Console) -> int:
    """Remove our entry (and VS Code's key prompt) and nothing else."""
    env = console.env
    path = _config_path(options, env)
    try:
        config = load_config(path, options.host)
    except InstallError as exc:
        console.error(str(exc))
        return 1
    existing = config.get(options.host.servers_key, {}).get(options.name)
    if existing is not None and not is_ours(existing) and not options.force:
        console.error(f'the server named "{options.name}" in {path} does not run nonecap-mcp; it was left alone '
                      "(pass --force to remove it anyway).")
        return 1
    claude = _claude_cli(options, env)
    if claude is not None:
        return _run_claude(console, [claude, "mcp", "remove", "--scope", "user", options.name], options.dry_run)
    if existing is None:
        _show(console, f'{options.host.title} has no server named "{options.name}" in {path}; nothing changed.')
        return 0
    updated = copy.deepcopy(config)
    del updated[options.host.servers_key][options.name]
    reference = "${input:" + input_id(options.name) + "}"
    if isinstance(updated.get("inputs"), list) and reference not in json.dumps(updated[options.host.servers_key]):
        updated["inputs"] = [i for i in updated["inputs"] if not (isinstance(i, dict) and i.get("id") == input_id(options.name))]
    if options.dry_run:
        _show(console, _diff(path, config, updated))
        _show(console, "dry run: nothing was written.")
        return 0
    backup = write_config(path, updated, secret=False)
    _show(console, f'Removed "{options.name}" from {options.host.title}\'s config {path}; the previous file is kept as {backup}.')
    return 0


@dataclass(frozen=True)
class InstalledEntry:
    """One of our entries found in a host's default config (for ``doctor``)."""

    host: Host
    path: Path
    name: str
    command: str

    def command_exists(self, env: Mapping[str, str]) -> bool:
        if os.path.isabs(self.command):
            return os.access(self.command, os.X_OK)
        return shutil.which(self.command, path=env.get("PATH")) is not None


def installed_entries(env: Mapping[str, str]) -> tuple[list[InstalledEntry], list[str]]:
    """Our entries in every host's default config, and the configs that could not be read."""
    found: list[InstalledEntry] = []
    unreadable: list[str] = []
    for host in HOSTS.values():
        path = default_config_path(host, env)
        try:
            config = load_config(path, host)
        except (InstallError, OSError) as exc:
            unreadable.append(f"{host.title} ({path}): {exc}")
            continue
        for name, entry in config.get(host.servers_key, {}).items():
            if is_ours(entry):
                found.append(InstalledEntry(host, path, name, str(entry.get("command", ""))))
    return found, unreadable
