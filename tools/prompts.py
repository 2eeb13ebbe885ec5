"""MCP prompts: the whole solving workflow, as a host can offer it to a user in one click."""

from __future__ import annotations

from mcp.server import MCPServer

SOLVE_CAPTCHA = """\
Get an hCaptcha token for {url} with the NoneCap tools, only if I am authorised to automate that site.

1. Find the sitekey in the page: the `data-sitekey` attribute of the `h-captcha` element, or the
   `sitekey` passed to `hcaptcha.render(...)`. If the page passes an `rqdata` to the widget (enterprise
   sites), take it too, fresh; type is `hcaptcha_enterprise` for enterprise sitekeys, else `hcaptcha`.
2. Call create_solve(type, sitekey, url="{url}", rqdata if any, user_agent of the browser that will
   submit, proxy if that browser uses one).
3. If the result is `pending` or `solving`, call get_solve(id, wait_seconds) until it is terminal.
   Never create a second solve for the same page while one is pending.
4. When `solved`, use the token at once (it is single-use and expires within about two minutes):
   put it in the form field `h-captcha-response` (and `g-recaptcha-response` if the page has one)
   and submit from the same user agent (`user_agent` of the solve) and the same IP as the proxy.
5. When it is not solved, or a call fails, follow its `guidance` (`action`, `hint`,
   `retry_after_seconds`) instead of guessing.
6. Tell NoneCap what the site did with the token: report_solve(id, outcome) with `accepted` or
   `rejected` (with the site's answer as reason), or `unused` if it was never submitted.
"""


def solve_captcha(url: str) -> str:
    """Find the sitekey (and rqdata) on a page, solve it, use the token at once and report the outcome."""
    return SOLVE_CAPTCHA.format(url=url)


def register(server: MCPServer) -> None:
    """Add the solve_captcha prompt."""
    server.prompt(name="solve_captcha", title="Solve a page's hCaptcha")(solve_captcha)
