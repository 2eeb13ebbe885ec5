"""MCP prompts: the whole solving workflow, as a host can offer it to a user in one click."""

from __future__ import annotations

from mcp.server import MCPServer

SOLVE_CAPTCHA = """\
Get a captcha token for {url} with the NoneCap tools, only if I am authorised to automate that site.

1. Find the captcha and its sitekey in the page. An `h-captcha` element or `hcaptcha.render(...)`:
   type `hcaptcha` (`hcaptcha_enterprise` for enterprise sitekeys; if the page passes an `rqdata` to
   the widget, take it too, fresh). A `g-recaptcha` element or `grecaptcha.render(...)`:
   `recaptcha_v2`. A `cf-turnstile` element or `turnstile.render(...)`: `turnstile`. The sitekey is
   the `data-sitekey` attribute or the `sitekey` passed to render. get_pricing shows which rail
   sells which type.
2. Call create_solve(type, sitekey, url="{url}", rqdata if any, user_agent of the browser that will
   submit, proxy if that browser uses one).
3. If the result is `pending` or `solving`, call get_solve(id, wait_seconds) until it is terminal.
   Never create a second solve for the same page while one is pending.
4. When `solved`, use the token at once, as its `how_to_use` says: it is single-use and short-lived;
   put it in the form field it names (`h-captcha-response`, `g-recaptcha-response` or
   `cf-turnstile-response`) and submit from the same user agent (`user_agent` of the solve) and the
   same IP as the proxy.
5. When it is not solved, or a call fails, follow its `guidance` (`action`, `hint`,
   `retry_after_seconds`) instead of guessing.
6. Tell NoneCap what the site did with the token: report_solve(id, outcome) with `accepted` or
   `rejected` (with the site's answer as reason), or `unused` if it was never submitted.
"""


def solve_captcha(url: str) -> str:
    """Find a page's captcha and sitekey (and rqdata), solve it, use the token at once and report the outcome."""
    return SOLVE_CAPTCHA.format(url=url)


def register(server: MCPServer) -> None:
    """Add the solve_captcha prompt."""
    server.prompt(name="solve_captcha", title="Solve a page's captcha")(solve_captcha)
