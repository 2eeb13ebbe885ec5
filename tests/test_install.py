"""`nonecap-mcp install|uninstall HOST`, against temp configs and a fake HOME.

Never the real user's configs: every run gets HOME (and XDG_CONFIG_HOME) under tmp_path, and
a PATH without any real `claude`. The commands run in this process with the environment and working
directory their process would have (`in_process.run_main`); the console script itself runs where
the process is the promise (exit status and output as a shell sees them; the server a host starts
from the written entry).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from in_process import Ran, run_main
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from nonecap_mcp import __version__
from nonecap_mcp.install import HOSTS, default_config_path
from nonecap_mcp.sandbox import SANDBOX_API_KEY

SCRIPT = str(Path(sys.executable).parent / "nonecap-mcp")
OTHER = {"command": "/usr/bin/other-server", "args": ["--flag"], "env": {"OTHER_TOKEN": "keep-me"}}


def install_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """A fake HOME and a PATH holding only tmp_path/bin and the system."""
    return {"HOME": str(tmp_path / "home"), "PATH": os.pathsep.join([str(tmp_path / "bin"), "/usr/bin", "/bin"]),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "PYTHONPATH": str(ROOT / "tests")} | env


def run_process(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script in its own process."""
    result = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=install_env(tmp_path, **env), timeout=60, cwd=tmp_path)
    assert SANDBOX_API_KEY not in result.stdout + result.stderr
    return result


def run(tmp_path: Path, *args: str, cwd: Path | None = None, **env: str) -> Ran:
    """The command in this process, with that environment and working directory."""
    result = run_main(args, install_env(tmp_path, **env), cwd=cwd or tmp_path)
    assert SANDBOX_API_KEY not in result.stdout + result.stderr
    return result


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".*.bak"))


def test_install_merges_backs_up_and_is_idempotent(tmp_path: Path) -> None:
    """The first install as its own process: its exit status and what it tells the user, as a shell shows them."""
    config = tmp_path / "claude_desktop_config.json"
    original = json.dumps({"mcpServers": {"other": OTHER}, "globalShortcut": "Ctrl+Space"})
    config.write_text(original)
    result = run_process(tmp_path, "install", "claude-desktop", "--config", str(config))
    assert result.returncode == 0, result.stderr
    written = json.loads(config.read_text())
    assert written["mcpServers"]["other"] == OTHER and written["globalShortcut"] == "Ctrl+Space"
    entry = written["mcpServers"]["nonecap"]
    assert entry == {"command": SCRIPT, "args": ["serve"]}  # no env: no secret, nothing to hide
    assert os.access(entry["command"], os.X_OK) and os.path.isabs(entry["command"])
    [backup] = backups(config)
    assert backup.read_text() == original
    assert "Fully quit Claude Desktop" in result.stdout

    again = run(tmp_path, "install", "claude-desktop", "--config", str(config))
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert backups(config) == [backup] and json.loads(config.read_text()) == written


def test_serve_flags_name_and_uvx_go_into_the_entry(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    result = run(tmp_path, "install", "cursor", "--config", str(config), "--sandbox", "--read-only", "--rail", "x402", "--name", "nc2")
    assert result.returncode == 0, result.stderr
    assert json.loads(config.read_text())["mcpServers"]["nc2"]["args"] == ["serve", "--sandbox", "--read-only", "--rail", "x402"]
    assert backups(config) == []  # a new file has nothing to back up

    uvx = run(tmp_path, "install", "cursor", "--config", str(config), "--uvx")
    assert uvx.returncode == 0, uvx.stderr
    entry = json.loads(config.read_text())["mcpServers"]["nonecap"]
    assert entry == {"command": "uvx", "args": ["--from", f"nonecap-mcp=={__version__}", "nonecap-mcp", "serve"]}
    pinned = run(tmp_path, "install", "cursor", "--config", str(config), "--uvx", "--uvx-from", "/wheels/nonecap_mcp-0.1.0-py3-none-any.whl")
    assert json.loads(config.read_text())["mcpServers"]["nonecap"]["args"][1] == "/wheels/nonecap_mcp-0.1.0-py3-none-any.whl", pinned.stderr


def test_dry_run_prints_the_change_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"mcpServers": {}}')
    result = run(tmp_path, "install", "windsurf", "--config", str(config), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert '+    "nonecap": {' in result.stdout and f'"command": "{SCRIPT}"' in result.stdout
    assert "nothing was written" in result.stdout
    assert config.read_text() == '{"mcpServers": {}}' and backups(config) == []
    missing = tmp_path / "absent" / "config.json"
    assert run(tmp_path, "install", "windsurf", "--config", str(missing), "--dry-run").returncode == 0
    assert not missing.parent.exists()


@pytest.mark.parametrize("text", [
    '{\n  // my servers\n  "servers": {}\n}',  # JSONC: a rewrite would drop the comment
    '{"servers": {"a": 1,},}',                  # trailing commas
    "[1, 2]",
    '{"servers": []}',
])
def test_a_file_it_cannot_rewrite_faithfully_is_left_alone(tmp_path: Path, text: str) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(text)
    result = run(tmp_path, "install", "vscode", "--config", str(config))
    assert result.returncode == 1
    assert "was not changed" in result.stderr
    assert config.read_text() == text and backups(config) == []
    if text.startswith("{\n"):
        assert "line 2" in result.stderr and "JSONC" in result.stderr
        assert '"nonecap"' in result.stdout  # the entry to add by hand


def test_vscode_user_config_prompts_for_the_key_instead_of_storing_it(tmp_path: Path) -> None:
    result = run(tmp_path, "install", "vscode", NONECAP_API_KEY=SANDBOX_API_KEY)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "home" / ".config" / "Code" / "User" / "mcp.json"
    text = path.read_text()
    assert SANDBOX_API_KEY not in text
    config = json.loads(text)
    assert config["servers"]["nonecap"] == {"type": "stdio", "command": SCRIPT, "args": ["serve"],
                                           "env": {"NONECAP_API_KEY": "${input:nonecap-api-key}"}}
    assert config["inputs"] == [{"type": "promptString", "id": "nonecap-api-key", "password": True,
                                 "description": "NoneCap API key (nc_live_...); leave empty to use the OS keyring"}]
    assert run(tmp_path, "install", "vscode").stdout.endswith("nothing changed.\n")

    removed = run(tmp_path, "uninstall", "vscode")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(path.read_text()) == {"servers": {}, "inputs": []}


def test_vscode_workspace_writes_dot_vscode_in_the_current_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    result = run(tmp_path, "install", "vscode", "--workspace", "--sandbox", cwd=project)
    assert result.returncode == 0, result.stderr
    config = json.loads((project / ".vscode" / "mcp.json").read_text())
    assert config == {"servers": {"nonecap": {"type": "stdio", "command": SCRIPT, "args": ["serve", "--sandbox"]}}}


def test_a_secret_is_written_only_when_asked_and_then_with_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "claude.json"
    plain = run(tmp_path, "install", "claude-desktop", "--config", str(config), NONECAP_API_KEY=SANDBOX_API_KEY)
    assert plain.returncode == 0 and SANDBOX_API_KEY not in config.read_text() and plain.stderr == ""

    asked = run(tmp_path, "install", "claude-desktop", "--config", str(config), "--write-api-key-to-config",
                NONECAP_API_KEY=SANDBOX_API_KEY)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(config.read_text())["mcpServers"]["nonecap"]["env"] == {"NONECAP_API_KEY": SANDBOX_API_KEY}
    assert "plain text" in asked.stderr and "auth login" in asked.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    nothing = run(tmp_path, "install", "cursor", "--config", str(tmp_path / "c.json"), "--write-api-key-to-config")
    assert nothing.returncode == 1 and "No NoneCap API key" in nothing.stderr and not (tmp_path / "c.json").exists()


def test_wallet_key_file_is_passed_by_path(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    assert run(tmp_path, "install", "cursor", "--config", str(config), "--wallet-key-file", str(tmp_path / "w.key")).returncode == 0
    assert json.loads(config.read_text())["mcpServers"]["nonecap"]["env"] == {"NONECAP_WALLET_KEY_FILE": str(tmp_path / "w.key")}


def test_uninstall_removes_only_our_entry_and_never_a_stranger(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"mcpServers": {"other": OTHER}}))
    assert run(tmp_path, "install", "cursor", "--config", str(config)).returncode == 0
    removed = run(tmp_path, "uninstall", "cursor", "--config", str(config))
    assert removed.returncode == 0, removed.stderr
    assert json.loads(config.read_text()) == {"mcpServers": {"other": OTHER}}
    assert "nothing changed" in run(tmp_path, "uninstall", "cursor", "--config", str(config)).stdout

    refused = run(tmp_path, "uninstall", "cursor", "--config", str(config), "--name", "other")
    assert refused.returncode == 1 and "does not run nonecap-mcp" in refused.stderr
    taken = run(tmp_path, "install", "cursor", "--config", str(config), "--name", "other")
    assert taken.returncode == 1 and "--force" in taken.stderr
    assert json.loads(config.read_text()) == {"mcpServers": {"other": OTHER}}


def fake_claude(tmp_path: Path) -> Path:
    """A `claude` on PATH that records each argv it is run with, one JSON line per run."""
    log = tmp_path / "claude-argv.jsonl"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "claude"
    script.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    script.chmod(0o755)
    return log


def test_claude_code_uses_the_claude_cli_when_it_is_on_path(tmp_path: Path) -> None:
    log = fake_claude(tmp_path)
    result = run(tmp_path, "install", "claude-code", "--read-only")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        ["mcp", "add", "--scope", "user", "nonecap", "--", SCRIPT, "serve", "--read-only"]]
    assert not (tmp_path / "home" / ".claude.json").exists()  # the CLI owns that file

    dry = run(tmp_path, "uninstall", "claude-code", "--dry-run")
    assert dry.returncode == 0 and "would run:" in dry.stdout and len(log.read_text().splitlines()) == 1
    assert run(tmp_path, "uninstall", "claude-code").returncode == 0
    assert json.loads(log.read_text().splitlines()[-1]) == ["mcp", "remove", "--scope", "user", "nonecap"]


def test_claude_code_without_the_cli_writes_the_user_mcp_servers_of_claude_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".claude.json").write_text(json.dumps({"numStartups": 3, "projects": {"/p": {"mcpServers": {}}}}))
    (home / ".claude.json").chmod(0o600)
    result = run(tmp_path, "install", "claude-code", "--sandbox")
    assert result.returncode == 0, result.stderr
    written = json.loads((home / ".claude.json").read_text())
    assert written["numStartups"] == 3 and written["projects"] == {"/p": {"mcpServers": {}}}
    assert written["mcpServers"] == {"nonecap": {"type": "stdio", "command": SCRIPT, "args": ["serve", "--sandbox"]}}
    assert stat.S_IMODE((home / ".claude.json").stat().st_mode) == 0o600  # a private file stays private


def test_default_config_paths_per_os() -> None:
    home = {"HOME": "/h", "APPDATA": "C:/Users/u/AppData/Roaming", "USERPROFILE": "C:/Users/u"}
    assert default_config_path(HOSTS["claude-desktop"], home, "darwin") == Path("/h/Library/Application Support/Claude/claude_desktop_config.json")
    assert default_config_path(HOSTS["claude-desktop"], home, "win32") == Path("C:/Users/u/AppData/Roaming/Claude/claude_desktop_config.json")
    assert default_config_path(HOSTS["claude-desktop"], home, "linux") == Path("/h/.config/Claude/claude_desktop_config.json")
    assert default_config_path(HOSTS["vscode"], home, "darwin") == Path("/h/Library/Application Support/Code/User/mcp.json")
    assert default_config_path(HOSTS["vscode"], home | {"XDG_CONFIG_HOME": "/x"}, "linux") == Path("/x/Code/User/mcp.json")
    assert default_config_path(HOSTS["cursor"], home, "win32") == Path("/h/.cursor/mcp.json")
    assert default_config_path(HOSTS["claude-code"], home, "linux") == Path("/h/.claude.json")
    assert default_config_path(HOSTS["windsurf"], home, "darwin") == Path("/h/.codeium/windsurf/mcp_config.json")


@pytest.mark.anyio
async def test_the_written_entry_starts_a_working_server(tmp_path: Path) -> None:
    """What a host does with the file: run command + args over stdio and list the tools."""
    config = tmp_path / "claude_desktop_config.json"
    assert run(tmp_path, "install", "claude-desktop", "--config", str(config), "--sandbox").returncode == 0
    entry = json.loads(config.read_text())["mcpServers"]["nonecap"]
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    with open(os.devnull, "w") as quiet:
        async with Client(stdio_client(params, errlog=quiet), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    assert {"create_solve", "get_solve", "get_balance"} <= names
