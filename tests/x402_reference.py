"""Shared x402 test helpers: 402 builders and the official reference verifiers, offline.

Our signatures are only worth something if the code that will judge them accepts them,
so the tests run them through both official implementations:

* npm ``@x402/evm`` (pinned in ``tests/x402_verifiers/package.json`` + lock), installed on
  first use with ``npm ci`` into ``tests/x402_verifiers/node_modules`` (git-ignored), and
  driven by ``verify_v1.mjs`` / ``verify_v2.mjs``, one node process per batch of cases;
* PyPI ``x402[evm]==2.25.0``: its EIP-712 hash + ECDSA check, and its full facilitator
  ``verify`` with a stub chain signer.

Signed headers expire ``maxTimeoutSeconds`` after signing, so fixtures are always signed
fresh inside the test run; never commit one.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from npm_packages import npm_ci

from nonecap_mcp.credentials import Secret

VERIFIERS_DIR = Path(__file__).parent / "x402_verifiers"
PY_X402_REQUIREMENT = "x402[evm]==2.25.0"

PAY_TO = "0xADBA492fb2e41912d82161C7E5bFE4195E4c6637"  # the rail's published payTo
OTHER_ADDRESS = "0x1111111111111111111111111111111111111111"
RESOURCE_URL = "https://api.ucaptcha.net/x402/createTask"
BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


class CountingSecret(Secret):
    """A wallet key that counts how often it is revealed.

    Signing needs the key, so ``reveals == 0`` after a refused payment proves nothing was
    signed, without patching the code under test.
    """

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.reveals = 0

    def reveal(self) -> str:
        self.reveals += 1
        return super().reveal()


def new_wallet_key() -> CountingSecret:
    """A throwaway random key: never a real wallet, never the same twice."""
    return CountingSecret("0x" + os.urandom(32).hex())


def v1_accept(**overrides: Any) -> dict[str, Any]:
    """The rail's documented v1 accept (HardCaptcha, $0.012), with fields overridden."""
    accept: dict[str, Any] = {
        "scheme": "exact",
        "network": "base",
        "maxAmountRequired": "12000",
        "resource": RESOURCE_URL,
        "description": "uCaptcha solve: HardCaptchaTokenProxyLess",
        "mimeType": "application/json",
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 90,
        "asset": BASE_USDC,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    accept.update(overrides)
    return accept


def v1_body(*accepts: Any, **overrides: Any) -> dict[str, Any]:
    """A v1 402 JSON body around ``accepts`` (default: one good accept)."""
    body: dict[str, Any] = {
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": list(accepts) or [v1_accept()],
    }
    body.update(overrides)
    return body


def v2_accept(**overrides: Any) -> dict[str, Any]:
    """The same offer as a v2 accept: CAIP-2 network, ``amount``, no per-accept resource."""
    accept: dict[str, Any] = {
        "scheme": "exact",
        "network": "eip155:8453",
        "amount": "12000",
        "asset": BASE_USDC,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 90,
        "extra": {"name": "USD Coin", "version": "2"},
    }
    accept.update(overrides)
    return accept


def v2_header(*accepts: Any, **overrides: Any) -> str:
    """A ``PAYMENT-REQUIRED`` header value (base64 JSON) around ``accepts``."""
    document: dict[str, Any] = {
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": RESOURCE_URL, "description": "uCaptcha solve", "mimeType": "application/json"},
        "accepts": list(accepts) or [v2_accept()],
    }
    document.update(overrides)
    return b64json(document)


def b64json(document: Any) -> str:
    """Standard base64 (with padding) of compact JSON, as x402 headers are written."""
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def unb64json(value: str) -> Any:
    """Inverse of :func:`b64json`."""
    return json.loads(base64.b64decode(value))


def tamper(header: str, change: Any) -> str:
    """Re-encode ``header`` after ``change(payload_dict)`` mutated a deep copy of it."""
    payload = copy.deepcopy(unb64json(header))
    change(payload)
    return b64json(payload)


# --- npm @x402/evm -----------------------------------------------------------------------


@functools.cache
def npm_verifiers() -> Path:
    """``tests/x402_verifiers`` with the pinned ``@x402/evm`` installed (``npm ci`` if needed)."""
    return npm_ci(VERIFIERS_DIR, "the @x402/evm reference verifier")


def npm_verify(version: int, cases: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run ``(header, requirements)`` cases through verify_v{version}.mjs in one node process."""
    directory = npm_verifiers()
    done = subprocess.run(
        ["node", str(directory / f"verify_v{version}.mjs")],
        input=json.dumps([{"header": h, "requirements": r} for h, r in cases]),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(results) == len(cases)
    return results


# --- PyPI x402 ---------------------------------------------------------------------------


def _py_x402() -> None:
    """Skip unless the reference Python package (with its web3 extra) is importable."""
    pytest.importorskip("web3", reason=f"needs {PY_X402_REQUIREMENT} (pip install '{PY_X402_REQUIREMENT}')")
    pytest.importorskip("x402.mechanisms.evm", reason=f"needs {PY_X402_REQUIREMENT}")


def py_signature_valid(header: str, requirements: dict[str, Any]) -> bool:
    """The SDK's own EIP-712 digest and ECDSA check, domain taken from ``requirements``."""
    _py_x402()
    from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
    from x402.mechanisms.evm.types import ExactEIP3009Authorization
    from x402.mechanisms.evm.utils import get_evm_chain_id
    from x402.mechanisms.evm.v1.utils import get_evm_chain_id as get_v1_chain_id
    from x402.mechanisms.evm.verify import verify_eoa_signature

    inner = unb64json(header)["payload"]
    a = inner["authorization"]
    network = requirements["network"]
    chain_id = get_evm_chain_id(network) if network.startswith("eip155:") else get_v1_chain_id(network)
    authorization = ExactEIP3009Authorization(
        from_address=a["from"], to=a["to"], value=a["value"],
        valid_after=a["validAfter"], valid_before=a["validBefore"], nonce=a["nonce"],
    )
    extra = requirements["extra"]
    digest = hash_eip3009_authorization(authorization, chain_id, requirements["asset"], extra["name"], extra["version"])
    return bool(verify_eoa_signature(digest, bytes.fromhex(inner["signature"][2:]), a["from"]))


class _StubChain:
    """Offline FacilitatorEvmSigner: payers are EOAs, the asset has code, calls succeed.

    ``read_contract`` returning is what makes the facilitator's transfer simulation pass;
    every signature, recipient, amount and time check still runs in the SDK's code.
    """

    def __init__(self, asset: str) -> None:
        self._asset = asset.lower()

    def get_addresses(self) -> list[str]:
        return []

    def get_code(self, address: str) -> bytes:
        return b"\x60\x80" if address.lower() == self._asset else b""

    def read_contract(self, *args: Any, **kwargs: Any) -> None:
        return None


def py_facilitator_verify(header: str, requirements: dict[str, Any]) -> tuple[bool, str | None]:
    """The SDK facilitator's public ``verify`` (v1 or v2 by the payload), offline."""
    _py_x402()
    from x402 import PaymentPayload, PaymentRequirements, PaymentRequirementsV1, x402FacilitatorSync
    from x402.mechanisms.evm.exact.facilitator import ExactEvmScheme
    from x402.mechanisms.evm.exact.v1.facilitator import ExactEvmSchemeV1
    from x402.schemas.v1 import PaymentPayloadV1

    chain = cast(Any, _StubChain(requirements["asset"]))  # implements only what verify calls
    payload = unb64json(header)
    facilitator = x402FacilitatorSync()
    if payload["x402Version"] == 1:
        facilitator.register_v1([requirements["network"]], ExactEvmSchemeV1(chain))
        result = facilitator.verify(
            PaymentPayloadV1.model_validate(payload), PaymentRequirementsV1.model_validate(requirements)
        )
    else:
        facilitator.register([requirements["network"]], ExactEvmScheme(chain))
        result = facilitator.verify(
            PaymentPayload.model_validate(payload), PaymentRequirements.model_validate(requirements)
        )
    return result.is_valid, result.invalid_reason
