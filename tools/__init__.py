"""The MCP surface of nonecap-mcp: the server object, its seven tools, a prompt, resources and logging.

Everything an agent sees is defined under this package; what the tools call (API
clients, credentials, sandbox) lives in `nonecap_mcp` proper, imported at a call's first
need. Listing loads not even the tool modules: the server answers the lists from the
shipped `surface.json` and registers the tools at the first request that needs them
(`tools.server`). The modules that define tools do without `from __future__ import
annotations`: the SDK reads each signature several times while registering, and string
annotations would be evaluated (every `Field` rebuilt) each time.
"""

from __future__ import annotations

import functools

from mcp.server import MCPServer

from nonecap_mcp import __version__
from nonecap_mcp.config import Settings
from nonecap_mcp.tools import client_logging
from nonecap_mcp.tools.server import GuardedServer, surface_mode
from nonecap_mcp.tools.state import lifespan_for

INSTRUCTIONS = """\
NoneCap solves hCaptcha challenges in a hosted service and returns a P1_ token to submit as
h-captcha-response; paid in USDC (x402), also reCAPTCHA v2, Turnstile and image_to_text (image in,
text out). Use it only on sites the user is authorised to automate.
Typical flow: get_pricing or get_balance (optional) -> create_solve(type, sitekey, url) ->
if the result is pending, get_solve(id, wait_seconds) until it is terminal -> use the token
at once, as the result's how_to_use says -> report_solve(id, outcome). Never create a second solve for the same page while one
is pending. Every failure carries `guidance` with an action (retry, retry_with_new_proxy,
top_up, fix_parameter, wait_for_slot, ...)."""


def build_server(settings: Settings, *, server_class: type[GuardedServer] = GuardedServer, eager: bool = False) -> MCPServer:
    """A configured MCP server; nothing touches the network or the keyring until a tool runs.

    Its tools, prompt and resources are registered at the first request that needs them, or
    now when `eager` (the team server, which serves many clients and filters tools per client)."""
    server = server_class(
        "nonecap-mcp",
        add_surface=functools.partial(add_surface, read_only=settings.read_only),
        mode=surface_mode(settings.read_only),
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan_for(settings),
        log_level=settings.log_level.upper(),
        subscriptions=False,  # nothing here ever notifies a change, so 2026-07-28 must not advertise one
    )
    client_logging.register(server, default_level=settings.log_level)
    if eager:
        server.build_surface()
    return server


def add_surface(server: MCPServer, *, read_only: bool) -> None:
    """Register the tools, the prompt and the resources (what `surface.json` describes)."""
    from nonecap_mcp.tools import account, feedback, prompts, resources, solves

    solves.register(server, read_only=read_only)
    account.register(server)
    feedback.register(server, read_only=read_only)
    resources.register(server)
    if not read_only:
        prompts.register(server)  # the workflow it describes creates solves
