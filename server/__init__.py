"""nonecap-mcp: an MCP server that gives AI agents NoneCap captcha solving as tools.

The solving happens in the hosted NoneCap service; this package is its client, the
safety around it (secrets, spending, operator limits) and an offline sandbox.
Nothing heavy is imported here: hosts measure our start-up.
"""

__version__ = "0.1.0"
