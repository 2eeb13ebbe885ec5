"""What each rail sells: the one table of create_solve's captcha types.

The credits API sells hCaptcha (plain and enterprise); the x402 rail sells what its price
table names, of which create_solve maps these four. A type's rail decides how `auto` pays
for it, and its kind decides its arguments: token types take a sitekey and the page's url,
`image_to_text` takes only the image.
"""

from __future__ import annotations

from typing import Literal

PaidRail = Literal["credits", "x402"]
CREDITS_TYPES = ("hcaptcha", "hcaptcha_enterprise")
# Our captcha types → the x402 rail's task types (its price table keys).
X402_TASK_TYPES: dict[str, str] = {
    "hcaptcha": "HardCaptchaTokenProxyLess",
    "recaptcha_v2": "ReCaptchaV2TokenProxyLess",
    "turnstile": "TurnstileTokenProxyLess",
    "image_to_text": "ImageToTextTask",
}
CAPTCHA_TYPES = tuple(dict.fromkeys((*CREDITS_TYPES, *X402_TASK_TYPES)))  # what create_solve accepts
IMAGE_TYPES = frozenset({"image_to_text"})  # take `image`; every other type takes sitekey and url
# The rails in `auto`'s order of preference (credits first, as before there was a choice of types).
_BY_RAIL: dict[PaidRail, tuple[str, ...]] = {"credits": CREDITS_TYPES, "x402": tuple(X402_TASK_TYPES)}


def rails_selling(captcha_type: str | None) -> tuple[PaidRail, ...]:
    """The rails that sell this type, preferred first; every rail for no type in particular."""
    return tuple(rail for rail, types in _BY_RAIL.items() if captcha_type is None or captcha_type in types)


def types_by_rail() -> dict[str, list[str]]:
    """Each rail and the create_solve types it sells (as get_pricing shows them)."""
    return {rail: list(types) for rail, types in _BY_RAIL.items()}
