"""The MCP hosts `install` knows: their names (which the command line offers) and how each
spells a stdio server entry. Apart from `install`, so that building the command line
does not load the installer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Host:
    """An MCP host: where its config lives and how it spells a stdio server entry."""

    name: str
    title: str
    servers_key: str = "mcpServers"
    typed: bool = False  # entries carry "type": "stdio"
    restart: str = "Restart the host to load it."


HOSTS: dict[str, Host] = {
    host.name: host
    for host in (
        Host("claude-desktop", "Claude Desktop", restart="Fully quit Claude Desktop and open it again to load it."),
        Host("claude-code", "Claude Code", typed=True, restart="Start a new Claude Code session to load it (`/mcp` lists it)."),
        Host("cursor", "Cursor", restart="Cursor picks it up in Settings > MCP (reload the window if it does not)."),
        Host("vscode", "VS Code", servers_key="servers", typed=True,
             restart="VS Code starts it from the Chat view (MCP: List Servers); it asks for the API key on first start."),
        Host("windsurf", "Windsurf", restart="Refresh the MCP servers in Windsurf's Cascade panel to load it."),
    )
}
