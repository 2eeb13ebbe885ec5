"""The x402 rail of the sandbox: pay per successful solve in (pretend) USDC on Base.

Same server and port as the v1 API. Endpoints (no API key, per x402-rail.txt):

* ``GET /x402/pricing``: network, ``payTo`` (`SANDBOX_PAY_TO`), asset and `X402_PRICES_USD`.
* ``POST /x402/createTask`` ``{"task": {"type", "websiteURL", "websiteKey", "userAgent"?},
  "selectionMode"?, "provider"?}``, or for ``ImageToTextTask`` ``{"task": {"type", "body"}}``
  (the image, base64). A bad body, an unknown type or ``appId``/``softId``/``devId`` is a 400
  ``{"error"}``. Every priced type solves, each at its own price: the 402 offers the price of
  the task type in the body, so a payment made for one type does not pay for a dearer one.
  Then, without a payment header, a 402:
  v1 (default) a JSON body ``{x402Version: 1, error, accepts: [...]}``; v2 a
  ``PAYMENT-REQUIRED`` header (base64 JSON, CAIP-2 network, ``amount``, top-level
  ``resource``). With ``X-PAYMENT`` (v1) / ``PAYMENT-SIGNATURE`` (v2) the payment is verified
  (`x402_verify`) and the solve runs synchronously on the credits rail's test sitekeys
  (`TEST_SITEKEYS`; an image plans like the test sitekey written in its bytes, if any), capped at
  `SOLVE_CAP_S` (60 s): solved → settled on the sandbox chain and 200 ``{taskId, status: "ready",
  solution, cost, solveTimeMs, resultToken}``, the solution in its type's field with a plainly
  fake value (`_solution`: ``token`` + ``gRecaptchaResponse`` P1_SANDBOX…, ``gRecaptchaResponse``
  03SANDBOX…, ``token`` 0.SANDBOX…, ``text`` SANDBOX42), with ``X-PAYMENT-RESPONSE`` /
  ``PAYMENT-RESPONSE`` (base64 JSON receipt); failed → 422 ``{error, errorCode}``; expired or over the cap → 504. Nothing is settled
  unless the answer is 200, so the same authorization can be sent again after a 422/504.
* ``POST /x402/getTaskResult`` ``{"taskId", "resultToken"}`` (or ``X-Result-Token``): the
  200 body again, free; 404 unknown task, 403 wrong token.
* Rate limit: `DEFAULT_RATE_LIMIT` requests per `RATE_WINDOW_S` per client IP across
  ``/x402/*`` (sliding window; refused requests do not count): 429 with Retry-After.

A payment that fails verification gets a 402 whose ``error`` is one of these reasons:
``invalid_payload`` (undecodable header), ``invalid_x402_version``, ``invalid_scheme``,
``invalid_network``, ``no_matching_payment_requirements`` (v2 ``accepted`` is not what was
offered), ``invalid_payment_requirements`` (an override broke the accept itself),
``invalid_exact_evm_payload_recipient_mismatch``, ``invalid_exact_evm_payload_authorization_value``
(value is not exactly the price), ``invalid_exact_evm_payload_authorization_valid_before``
(expired, or less than 6 s left), ``invalid_exact_evm_payload_authorization_valid_after``,
``invalid_exact_evm_payload_signature``, ``invalid_exact_evm_nonce_already_used`` (replay of a
settled authorization) and ``insufficient_funds``. The same reasons can come back as a 402
after the solve when settlement fails (e.g. the authorization expired during the solve, or a
concurrent request with the same authorization settled first).

Verification follows what the server offered, hostile overrides included; settlement follows
what the real chain would do: only Base USDC exists (another asset has no balance) and the
signature must also hold under the true USDC EIP-712 domain.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import logging
import math
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from nonecap_mcp.config import scaled
from nonecap_mcp.sandbox.chain import SandboxChain, Settlement, SettleRefused, is_address, is_base_usdc
from nonecap_mcp.sandbox.errors import ApiError, Interrupted, InvalidField, Response
from nonecap_mcp.sandbox.outcomes import FAILURE_MESSAGES, Plan, plan_for
from nonecap_mcp.sandbox.request import ApiRequest
from nonecap_mcp.sandbox.solves import sandbox_token
from nonecap_mcp.sandbox.validation import is_http_url, parse_json_object
from nonecap_mcp.sandbox.x402_verify import (
    CANONICAL_DOMAIN,
    MIN_VALIDITY_S,
    Payment,
    PaymentRejected,
    Verified,
    decode_payment,
    signed_by_payer,
    verify_payment,
)
from nonecap_mcp.x402.networks import NETWORKS, usd_to_atomic

log = logging.getLogger("nonecap_mcp.sandbox")

X402_PREFIX = "/x402/"
# An address that says what it is ("5a4db0c" ~ sandbox, ends in 402), checksummed, not zero.
SANDBOX_PAY_TO = "0x5a4db0C000000000000000000000000000000402"
X402_PRICES_USD: dict[str, Decimal] = {
    "ReCaptchaV2TokenProxyLess": Decimal("0.0045"),
    "HardCaptchaTokenProxyLess": Decimal("0.012"),
    "TurnstileTokenProxyLess": Decimal("0.003"),
    "ImageToTextTask": Decimal("0.001"),
}
IMAGE_TASK = "ImageToTextTask"
SANDBOX_IMAGE_TEXT = "SANDBOX42"  # what every test image "says"
_TEST_IMAGE_KEY = re.compile(rb"sandbox-[a-z0-9_-]+")  # a test sitekey written into an image's bytes
FORBIDDEN_FIELDS = ("appId", "softId", "devId")
DEFAULT_RATE_LIMIT = 60
RATE_WINDOW_S = 60
SOLVE_CAP_S = scaled(60.0)  # the rail's solve cap, in the process's time scale
# The validity the rail advertises (maxTimeoutSeconds): chain time, which the client signs as given;
# scaled here so a compressed run's authorizations expire in proportion, never below what settling needs.
MAX_TIMEOUT_SECONDS = max(2 * MIN_VALIDITY_S, round(scaled(90)))
COST_USD = 0.0028  # the rail's "internal provider cost", shown for transparency only
MAX_TASKS = 10_000
MAX_ATTEMPTS = 10_000
HEADER_V1, HEADER_V2 = "X-PAYMENT", "PAYMENT-SIGNATURE"
RECEIPT_V1, RECEIPT_V2 = "X-PAYMENT-RESPONSE", "PAYMENT-RESPONSE"
_TOP_LEVEL = {1: frozenset({"x402Version", "error"}), 2: frozenset({"x402Version", "error", "resource", "extensions"})}
_HOST = re.compile(r"[A-Za-z0-9.\-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")
_SHOWN = 60


@dataclass(frozen=True)
class PaymentAttempt:
    """One payment header the rail received and what became of it.

    `status` is the HTTP status answered (200 settled, 402 refused or not settled, 422 solve
    failed, 504 too slow); `reason` the 402's error reason. The fields
    of the authorization are None when the header could not be decoded.
    """

    version: int
    task_type: str  # what the paid request asked to solve (its price is what the payment had to be)
    payer: str | None
    pay_to: str | None
    nonce: str | None
    value: int | None
    status: int
    reason: str | None
    task_id: str | None
    time: float


@dataclass(frozen=True)
class _Task:
    """A paid, solved task: what getTaskResult returns for its resultToken."""

    result_token: str
    body: dict[str, object]


@dataclass(frozen=True)
class _TaskSpec:
    """A validated createTask body: its task type and what its test key (or image) plans."""

    type: str
    plan: Plan


class X402Rail:
    """The x402 endpoints' state: configuration, chain, rate limiter, paid tasks. Thread-safe."""

    def __init__(self, *, rate_limit: int = DEFAULT_RATE_LIMIT, solve_timeout: float = SOLVE_CAP_S) -> None:
        if isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1:
            raise ValueError("x402_rate_limit must be an integer of at least 1")
        if isinstance(solve_timeout, bool) or not isinstance(solve_timeout, int | float) or not solve_timeout > 0:
            raise ValueError("x402_solve_timeout must be a positive number of seconds")
        self.chain = SandboxChain()
        self.rate_limit = rate_limit
        self.solve_timeout = float(solve_timeout)
        self._lock = threading.Lock()
        self._version = 1
        self._overrides: dict[str, Any] = {}
        self._hits: dict[str, deque[float]] = {}
        self._tasks: dict[str, _Task] = {}
        self._attempts: deque[PaymentAttempt] = deque(maxlen=MAX_ATTEMPTS)

    # -- controls ----------------------------------------------------------------------

    def reset(self) -> None:
        """v1, no overrides, default balances, no nonce used, empty rate windows, no tasks."""
        with self._lock:
            self._version, self._overrides = 1, {}
            self._hits.clear()
            self._tasks.clear()
            self._attempts.clear()
        self.chain.reset()

    def configure(self, version: object = 1, overrides: object = None) -> None:
        """Which x402 version the 402s speak, and fields that replace those of the offered accept.

        Keys of `overrides` replace accept fields (a value of None removes the field), except
        the top-level ones: ``x402Version`` and ``error``, and in v2 also ``resource`` and
        ``extensions``. ``accepts`` (a list) replaces the whole list, used verbatim.
        """
        if version not in (1, 2) or isinstance(version, bool):
            raise InvalidField("version", "version must be 1 or 2.")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, Mapping) or not all(isinstance(key, str) for key in overrides):
            raise InvalidField("overrides", "overrides must be an object with string keys.")
        if "accepts" in overrides and not isinstance(overrides["accepts"], list):
            raise InvalidField("overrides", "overrides.accepts must be a list (it replaces the accepts wholesale).")
        try:
            snapshot = json.loads(json.dumps(dict(overrides)))
        except (TypeError, ValueError):
            raise InvalidField("overrides", "overrides must be JSON-serializable.") from None
        with self._lock:
            self._version, self._overrides = int(version), snapshot  # type: ignore[arg-type]

    def config(self) -> tuple[int, dict[str, Any]]:
        """The current version and a copy of the overrides."""
        with self._lock:
            return self._version, copy.deepcopy(self._overrides)

    def payment_attempts(self) -> list[PaymentAttempt]:
        """Every payment header received, oldest first; a copy."""
        with self._lock:
            return list(self._attempts)

    def settlements(self) -> list[Settlement]:
        """Every settled payment, oldest first; a copy."""
        return self.chain.settlements()

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Response:
        """Rate limit, then route one /x402/* request."""
        retry_after = self._admit(request.client_ip)
        if retry_after is not None:
            return Response(
                429,
                {
                    "error": f"Rate limit exceeded: {self.rate_limit} requests per minute per IP on /x402/*.",
                    "errorCode": "rate_limited",
                },
                (("Retry-After", str(retry_after)),),
            )
        routes: dict[str, dict[str, Callable[[ApiRequest], Response]]] = {
            "/x402/pricing": {"GET": self._pricing},
            "/x402/createTask": {"POST": self._create_task},
            "/x402/getTaskResult": {"POST": self._get_task_result},
        }
        methods = routes.get(request.path)
        if methods is None:
            raise ApiError("not_found", "No such endpoint.")
        endpoint = methods.get(request.method)
        if endpoint is None:
            allow = ", ".join(methods)
            raise ApiError("invalid_request", f"Method {request.method} is not allowed here; use {allow}.",
                           status=405, headers=(("Allow", allow),))  # fmt: skip
        return endpoint(request)

    def _admit(self, client_ip: str) -> int | None:
        """Count this request in its IP's sliding window; the Retry-After seconds if over the limit."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(client_ip, deque())
            while hits and hits[0] <= now - RATE_WINDOW_S:
                hits.popleft()
            if len(hits) >= self.rate_limit:
                return max(1, math.ceil(hits[0] + RATE_WINDOW_S - now))
            hits.append(now)
            return None

    def _pricing(self, _request: ApiRequest) -> Response:
        """GET /x402/pricing: public, no payment."""
        prices = {name: float(price) for name, price in X402_PRICES_USD.items()}
        return Response(200, {"network": "base", "payTo": SANDBOX_PAY_TO, "asset": "USDC", "pricesUsd": prices})

    def _create_task(self, request: ApiRequest) -> Response:
        """POST /x402/createTask: 400, 402 challenge, or verify → solve → settle."""
        spec = _parse_create_task(request.body)
        version, overrides = self.config()
        resource_url = _base_url(request) + "/x402/createTask"
        header_name = HEADER_V1 if version == 1 else HEADER_V2
        header_value = request.header(header_name)
        if not header_value:
            return _challenge(version, overrides, spec.type, resource_url, f"{header_name} header is required")
        accepts = _offered(version, overrides, spec.type, resource_url)["accepts"]
        payment: Payment | None = None
        try:
            payment = decode_payment(header_value, version)
            verified = verify_payment(payment, accepts, int(time.time()))
            self._check_funds(verified)
        except PaymentRejected as rejected:
            self._record(version, spec.type, rejected.payment or payment, 402, rejected.reason, None)
            return _challenge(version, overrides, spec.type, resource_url, rejected.reason)
        return self._solve_and_settle(version, overrides, spec, resource_url, verified, request.interrupted)

    def _check_funds(self, verified: Verified) -> None:
        """Replay and balance, as a facilitator's verify simulates them on chain."""
        auth = verified.payment.authorization
        if self.chain.nonce_used(auth.payer, auth.nonce):
            raise PaymentRejected("invalid_exact_evm_nonce_already_used", verified.payment)
        balance = self.chain.balance_of(verified.domain.verifying_contract, verified.domain.chain_id, auth.payer)
        if balance < auth.value:
            raise PaymentRejected("insufficient_funds", verified.payment)

    def _solve_and_settle(
        self, version: int, overrides: dict[str, Any], spec: _TaskSpec, resource_url: str, verified: Verified,
        interrupted: threading.Event,
    ) -> Response:
        """Run the solve synchronously; settle only if it solved in time and the sandbox was
        neither reset nor stopped meanwhile."""
        plan, payment = spec.plan, verified.payment
        waited_ms = min(plan.total_ms, int(self.solve_timeout * 1000))
        if interrupted.wait(waited_ms / 1000):
            raise Interrupted  # nothing settled, nothing recorded: the sandbox it belonged to is gone
        if plan.outcome == "failed":
            code = str(plan.error_code)
            self._record(version, spec.type, payment, 422, None, None)
            return Response(422, {"error": FAILURE_MESSAGES[code], "errorCode": code})
        if plan.outcome != "solved" or plan.total_ms > waited_ms:
            self._record(version, spec.type, payment, 504, None, None)
            return Response(504, {
                "error": f"Solve did not complete within {self.solve_timeout:g} seconds; the payment was not settled.",
                "errorCode": "timeout",
            })  # fmt: skip
        task_id = str(uuid.uuid4())
        if interrupted.is_set():  # a reset between the solve and now: the chain it would pay on is a new one
            raise Interrupted
        try:
            settlement = self._settle(verified, task_id)
        except SettleRefused as refused:
            self._record(version, spec.type, payment, 402, refused.reason, None)
            return _challenge(version, overrides, spec.type, resource_url, refused.reason)
        body: dict[str, object] = {
            "taskId": task_id,
            "status": "ready",
            "solution": _solution(spec.type),
            "cost": COST_USD,
            "solveTimeMs": plan.total_ms,
            "resultToken": secrets.token_urlsafe(32),
        }
        receipt = {"success": True, "transaction": settlement.tx, "network": verified.network,
                   "payer": payment.authorization.payer}  # fmt: skip
        with self._lock:
            self._tasks[task_id] = _Task(str(body["resultToken"]), body)
            while len(self._tasks) > MAX_TASKS:
                del self._tasks[next(iter(self._tasks))]
        self._record(version, spec.type, payment, 200, None, task_id)
        log.debug("x402: settled %s atomic USDC from %s for task %s", settlement.value, settlement.payer, task_id)
        return Response(200, body, ((RECEIPT_V1 if version == 1 else RECEIPT_V2, _b64json(receipt)),))

    def _settle(self, verified: Verified, task_id: str) -> Settlement:
        """What the chain would do with this authorization: true USDC domain, window, nonce, balance."""
        auth = verified.payment.authorization
        domain = verified.domain
        if not is_base_usdc(domain.verifying_contract, domain.chain_id):
            raise SettleRefused("insufficient_funds")  # no such token on the sandbox chain
        if domain != CANONICAL_DOMAIN and not signed_by_payer(auth, CANONICAL_DOMAIN):
            raise SettleRefused("invalid_exact_evm_payload_signature")  # USDC checks its own domain
        return self.chain.transfer_with_authorization(
            payer=auth.payer,
            pay_to=auth.pay_to,
            value=auth.value,
            valid_after=auth.valid_after,
            valid_before=auth.valid_before,
            nonce=auth.nonce,
            network=verified.network,
            task_id=task_id,
        )

    def _get_task_result(self, request: ApiRequest) -> Response:
        """POST /x402/getTaskResult: the paid result again, gated by its resultToken."""
        fields = parse_json_object(request.body)
        task_id = fields.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise ApiError("invalid_request", "Missing required field: taskId.")
        token = fields.get("resultToken") or request.header("X-Result-Token")
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None:
            return Response(404, {"error": "No task with that taskId."})
        if not isinstance(token, str) or not secrets.compare_digest(token.encode(), task.result_token.encode()):
            return Response(403, {"error": "Missing or wrong resultToken for this task."})
        return Response(200, copy.deepcopy(task.body))

    def _record(self, version: int, task_type: str, payment: Payment | None, status: int, reason: str | None,
                task_id: str | None) -> None:
        """Remember one payment header, the task type it paid for, and its outcome."""
        auth = payment.authorization if payment is not None else None
        attempt = PaymentAttempt(
            version=version,
            task_type=task_type,
            payer=auth.payer if auth else None,
            pay_to=auth.pay_to if auth else None,
            nonce=auth.nonce if auth else None,
            value=auth.value if auth else None,
            status=status,
            reason=reason,
            task_id=task_id,
            time=time.time(),
        )
        with self._lock:
            self._attempts.append(attempt)


# -- request parsing ----------------------------------------------------------------------


def _parse_create_task(body: bytes) -> _TaskSpec:
    """Validate a createTask body (400 on anything wrong), including the test sitekey."""
    fields = parse_json_object(body)
    task = fields.get("task")
    if not isinstance(task, dict):
        raise ApiError("invalid_request", "Missing required field: task (an object).")
    for name in FORBIDDEN_FIELDS:
        if name in fields or name in task:
            raise ApiError("invalid_request", f"{name} is not accepted on the x402 rail (App IDs require an account).")
    task_type = task.get("type")
    if not isinstance(task_type, str) or not task_type:
        raise ApiError("invalid_request", "Missing required field: task.type.")
    if task_type not in X402_PRICES_USD:
        raise ApiError("invalid_request", f"Unsupported task type {_show(task_type)}; see GET /x402/pricing.")
    key = _test_image_key(task.get("body")) if task_type == IMAGE_TASK else _page(task)
    for name, value in (("task.userAgent", task.get("userAgent")), ("selectionMode", fields.get("selectionMode")),
                        ("provider", fields.get("provider"))):  # fmt: skip
        if value is not None and not isinstance(value, str):
            raise ApiError("invalid_request", f"{name} must be a string.")
    try:
        plan = plan_for(key)
    except ApiError as error:  # a mistyped sandbox- test sitekey
        raise ApiError("invalid_request", error.message) from None
    return _TaskSpec(task_type, plan)


def _page(task: dict[str, Any]) -> str:
    """A token task's websiteURL and websiteKey checked; the key (a test sitekey plans the solve)."""
    url, sitekey = task.get("websiteURL"), task.get("websiteKey")
    if not isinstance(url, str) or not is_http_url(url):
        raise ApiError("invalid_request", "task.websiteURL is required: an absolute http(s) URL.")
    if not isinstance(sitekey, str) or not sitekey.strip():
        raise ApiError("invalid_request", "task.websiteKey is required: a non-empty string.")
    return sitekey


def _test_image_key(image: object) -> str:
    """An ImageToTextTask's body checked (base64 of a non-empty file); the test sitekey written in
    its bytes, if any (a PNG ending in b"sandbox-fail-internal_error" fails like that sitekey)."""
    try:
        data = base64.b64decode(image, validate=True) if isinstance(image, str) else b""
    except (binascii.Error, ValueError):
        data = b""
    if not data:
        raise ApiError("invalid_request", "task.body is required: the image, base64.")
    found = _TEST_IMAGE_KEY.search(data)
    return found.group().decode() if found else ""


def _solution(task_type: str) -> dict[str, object]:
    """A solved task's answer, in the field providers use for its type, plainly a sandbox one."""
    if task_type == IMAGE_TASK:
        return {"text": SANDBOX_IMAGE_TEXT}
    if task_type == "ReCaptchaV2TokenProxyLess":
        return {"gRecaptchaResponse": f"03SANDBOX_{secrets.token_urlsafe(32)}_NOT_A_REAL_RECAPTCHA_TOKEN"}
    if task_type == "TurnstileTokenProxyLess":
        return {"token": f"0.SANDBOX_{secrets.token_urlsafe(32)}_NOT_A_REAL_TURNSTILE_TOKEN"}
    token = sandbox_token()
    return {"token": token, "gRecaptchaResponse": token}


def _base_url(request: ApiRequest) -> str:
    """The URL the client called, from its Host header (else the sandbox's own address)."""
    host = request.header("Host")
    if host and _HOST.fullmatch(host):
        return "http://" + host
    return request.server_url


# -- 402 challenges -----------------------------------------------------------------------


def _offered(version: int, overrides: dict[str, Any], task_type: str, resource_url: str, error: str = "") -> dict[str, Any]:
    """The PaymentRequired document for this task type, overrides applied."""
    network = NETWORKS["base"]
    atomic = str(usd_to_atomic(X402_PRICES_USD[task_type]))
    description = f"NoneCap sandbox solve: {task_type}"
    extra = {"name": network.eip712_name, "version": network.eip712_version}
    accept: dict[str, Any]
    top: dict[str, Any]
    if version == 1:
        accept = {"scheme": "exact", "network": network.name, "maxAmountRequired": atomic, "resource": resource_url,
                  "description": description, "mimeType": "application/json", "payTo": SANDBOX_PAY_TO,
                  "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS, "asset": network.asset, "extra": extra}  # fmt: skip
        top = {"x402Version": 1, "error": error}
    else:
        accept = {"scheme": "exact", "network": network.caip2, "amount": atomic, "asset": network.asset,
                  "payTo": SANDBOX_PAY_TO, "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS, "extra": extra}  # fmt: skip
        top = {"x402Version": 2, "error": error,
               "resource": {"url": resource_url, "description": description, "mimeType": "application/json"}}  # fmt: skip
    for key, value in overrides.items():
        if key == "accepts":
            continue
        target = top if key in _TOP_LEVEL[version] else accept
        if value is None:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)
    top["accepts"] = copy.deepcopy(overrides["accepts"]) if "accepts" in overrides else [accept]
    return top


def _challenge(version: int, overrides: dict[str, Any], task_type: str, resource_url: str, error: str) -> Response:
    """The 402: v1 in the body, v2 in the PAYMENT-REQUIRED header (body: just the error)."""
    document = _offered(version, overrides, task_type, resource_url, error)
    if version == 1:
        return Response(402, document)
    return Response(402, {"x402Version": 2, "error": document.get("error", error)},
                    (("PAYMENT-REQUIRED", _b64json(document)),))  # fmt: skip


def _b64json(document: object) -> str:
    """Standard base64 (with padding) of compact JSON, as x402 headers carry it."""
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def _show(value: str) -> str:
    """A client-supplied string, shortened for an error message."""
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "…")


# -- error rendering ----------------------------------------------------------------------


def is_x402_path(path: str) -> bool:
    """Whether a request belongs to the x402 rail (rate-limited, rail-style errors)."""
    return path.startswith(X402_PREFIX)


def rail_error(error: ApiError) -> Response:
    """An error on /x402/* in the rail's shape: ``{"error": message}`` (plus ``errorCode`` from 422 up)."""
    body: dict[str, object] = {"error": error.message}
    if error.status >= 422:
        body["errorCode"] = error.code
    return Response(error.status, body, error.headers)


def fund_amount(usd: object) -> int:
    """A USD amount (str, Decimal or int; never float) in atomic USDC, or InvalidField."""
    if isinstance(usd, bool) or isinstance(usd, float) or not isinstance(usd, str | Decimal | int):
        raise InvalidField("usd", "usd must be a decimal string such as \"5.00\" (or a Decimal), not a float.")
    try:
        return usd_to_atomic(Decimal(usd) if isinstance(usd, int) else usd)
    except (TypeError, ValueError) as error:
        raise InvalidField("usd", str(error)) from None


def check_address(address: object) -> str:
    """An address argument of the controls, or InvalidField."""
    if not is_address(address):
        raise InvalidField("address", "address must be 0x followed by 40 hex digits.")
    return str(address)
