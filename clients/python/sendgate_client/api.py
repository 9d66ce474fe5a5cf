"""A client of sendgate's HTTP API (docs/api.md in the sendgate repository).

Every request carries ``Authorization: Bearer TOKEN``: a tenant's token
acts for that tenant alone, an operator's for every tenant. An error answer
raises :class:`~sendgate_client.errors.ApiError` with its status and the
API's ``{"error": ...}`` message. A 503 or 429 answer that carries
``Retry-After`` (no instance serves a partition during a rebalance; another
explanation is running) is retried after the time it asks for, at most
``max_retries`` times. Network failures raise httpx's own exceptions.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

import httpx

from .errors import ApiError
from .records import Decision, DeliveryKind, SendIntent

__all__ = [
    "ApiClient",
    "DecideResult",
    "UsageWindow",
    "Signals",
    "UsageReport",
    "Check",
    "Simulated",
    "PolicyDocumentRef",
    "SignalEvent",
    "Explanation",
    "HeldList",
    "CommandAccepted",
]


@dataclass
class DecideResult:
    """What ``POST /v1/intents`` answered.

    ``decisions`` are the decisions that came, in the order of the request.
    When the wait ended first (HTTP 202), ``pending`` lists the intent ids
    still undecided and ``poll`` the API paths their decisions will be at
    (``/v1/decisions/{intent_id}?tenant=T``).
    """

    decisions: List[Decision]
    pending: List[str] = field(default_factory=list)
    poll: List[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every intent of the request has its decision."""
        return not self.pending


@dataclass
class UsageWindow:
    """One window of a scope (``GET /v1/usage``): used, limit and remaining.

    ``intent_class`` is the window's class (``outbound``, ``transactional``,
    or ``all`` for a warm-up cap); ``resets_at_ms`` is when the window ends.
    """

    scope: str
    intent_class: str
    window: str
    used: int
    limit: int
    remaining: int
    resets_at_ms: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UsageWindow":
        return cls(
            scope=d["scope"],
            intent_class=d["class"],
            window=d["window"],
            used=int(d["used"]),
            limit=int(d["limit"]),
            remaining=int(d["remaining"]),
            resets_at_ms=int(d["resets_at_ms"]),
        )


@dataclass
class Signals:
    """A sender domain's delivery signals over its signal window."""

    window_hours: int
    sends: int
    hard_bounces: int
    complaints: int
    bounce_rate: float
    complaint_rate: float
    bounce_tier: str
    complaint_tier: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Signals":
        return cls(
            window_hours=int(d["window_hours"]),
            sends=int(d["sends"]),
            hard_bounces=int(d["hard_bounces"]),
            complaints=int(d["complaints"]),
            bounce_rate=float(d["bounce_rate"]),
            complaint_rate=float(d["complaint_rate"]),
            bounce_tier=d["bounce_tier"],
            complaint_tier=d["complaint_tier"],
        )


@dataclass
class UsageReport:
    """A scope's windows with the numbers the next decision would use.

    ``signals`` and ``paused`` come with mailbox and sender-domain scopes;
    ``backoff_until_ms`` and ``public_provider`` with recipient domains.
    """

    scope: str
    policy_version: int
    windows: List[UsageWindow]
    signals: Optional[Signals] = None
    paused: Optional[str] = None
    backoff_until_ms: Optional[int] = None
    public_provider: bool = False

    def window(self, window: str, intent_class: str = "outbound") -> Optional[UsageWindow]:
        """The first window of that length and class, if the scope has one."""
        for w in self.windows:
            if w.window == window and w.intent_class == intent_class:
                return w
        return None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UsageReport":
        signals = d.get("signals")
        backoff = d.get("backoff_until_ms")
        return cls(
            scope=d["scope"],
            policy_version=int(d["policy_version"]),
            windows=[UsageWindow.from_dict(w) for w in d.get("windows", [])],
            signals=None if signals is None else Signals.from_dict(signals),
            paused=d.get("paused"),
            backoff_until_ms=None if backoff is None else int(backoff),
            public_provider=bool(d.get("public_provider", False)),
        )


@dataclass
class Check:
    """One check a stage ran: ``outcome`` is ``pass`` or what it decided."""

    stage: str
    check: str
    outcome: str
    detail: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Check":
        return cls(stage=d["stage"], check=d["check"], outcome=d["outcome"], detail=d["detail"])


@dataclass
class Simulated:
    """What an intent would get now (``POST /v1/simulate``), with every check behind it."""

    decision: Decision
    checks: List[Check]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Simulated":
        return cls(decision=Decision.from_dict(d["decision"]), checks=[Check.from_dict(c) for c in d.get("checks", [])])


@dataclass
class PolicyDocumentRef:
    """A policy document that applied to a decision: its scope and version."""

    scope: str
    version: int


@dataclass
class SignalEvent:
    """A hard bounce or complaint behind a sender domain's signal rates."""

    event_id: str
    kind: DeliveryKind
    at_ms: int
    recipient: str


@dataclass
class Explanation:
    """Why an intent got its latest decision (``GET /v1/explain/{id}``).

    ``decided_by`` is the check that decided, ``None`` when every check passed.
    """

    decision: Decision
    documents: List[PolicyDocumentRef]
    checks: List[Check]
    decided_by: Optional[Check]
    signal_events: List[SignalEvent]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Explanation":
        decided_by = d.get("decided_by")
        return cls(
            decision=Decision.from_dict(d["decision"]),
            documents=[PolicyDocumentRef(scope=x["scope"], version=int(x["version"])) for x in d.get("documents", [])],
            checks=[Check.from_dict(c) for c in d.get("checks", [])],
            decided_by=None if decided_by is None else Check.from_dict(decided_by),
            signal_events=[
                SignalEvent(
                    event_id=s["event_id"],
                    kind=DeliveryKind(s["kind"]),
                    at_ms=int(s["at_ms"]),
                    recipient=s["recipient"],
                )
                for s in d.get("signal_events", [])
            ],
        )


@dataclass
class HeldList:
    """Intents held for approval, gathered from every instance.

    ``covers`` says which instance answered for which partitions;
    ``missing`` what the list may lack (empty: the list is complete).
    """

    held: List[SendIntent]
    covers: List[str]
    missing: List[str]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HeldList":
        return cls(
            held=[SendIntent.from_dict(i) for i in d.get("held", [])],
            covers=list(d.get("covers", [])),
            missing=list(d.get("missing", [])),
        )


@dataclass
class CommandAccepted:
    """An APPROVE or REJECT command the API published (HTTP 202)."""

    command_id: str
    kind: str
    tenant: str
    target: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CommandAccepted":
        return cls(command_id=d["command_id"], kind=d["kind"], tenant=d["tenant"], target=d["target"])


def _retry_after_seconds(value: Optional[str]) -> Optional[float]:
    """Parses Retry-After: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_message(response: httpx.Response) -> Tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return (response.text.strip() or response.reason_phrase), response.text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"], body
    return response.text.strip(), body


class ApiClient:
    """sendgate's HTTP API.

    ``base_url`` is the API's address (``http://127.0.0.1:9465``), ``token``
    a tenant's or an operator's bearer token. For HTTPS, ``verify=False``
    turns certificate checks off and ``ca_file`` names PEM CA certificates
    to trust instead of the system's. ``timeout`` bounds each request
    (``decide`` adds its ``wait_ms``). A 503 or 429 with ``Retry-After``
    is retried at most ``max_retries`` times, each wait capped at
    ``max_retry_after`` seconds. ``transport`` is passed to httpx (proxies,
    mounts, tests).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: bool = True,
        ca_file: Optional[str] = None,
        timeout: float = 40.0,
        max_retries: int = 3,
        max_retry_after: float = 30.0,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        if not token:
            raise ValueError("a bearer token is required (a tenant's or an operator's)")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        tls: Union[bool, ssl.SSLContext]
        if ca_file is not None:
            if not verify:
                raise ValueError("ca_file needs verify=True")
            tls = ssl.create_default_context(cafile=ca_file)
        else:
            tls = verify
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            verify=tls,
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection pool."""
        self._client.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> httpx.Response:
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            response = self._client.request(
                method, path, params=clean, json=json, timeout=self.timeout if timeout is None else timeout
            )
            if response.status_code < 400:
                return response
            retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
            if response.status_code in (429, 503) and retry_after is not None and attempt < self.max_retries:
                attempt += 1
                time.sleep(min(retry_after, self.max_retry_after))
                continue
            message, body = _error_message(response)
            raise ApiError(response.status_code, message, retry_after=retry_after, body=body)

    def decide(self, intents: Sequence[SendIntent], wait_ms: int = 5000) -> DecideResult:
        """Publishes intents (``POST /v1/intents``) and waits up to ``wait_ms`` for their decisions.

        Up to 1000 intents; ``wait_ms`` at most 30000 (0: do not wait).
        Returns every decision in the order given, or, when the wait ended
        first, those that came with the pending ids and their poll paths.
        An invalid intent is refused (400) and nothing is published.
        """
        if not 0 <= wait_ms <= 30_000:
            raise ValueError("wait_ms is 0 to 30000")
        body = [i.to_dict() for i in intents]
        if not body:
            raise ValueError("give at least one intent")
        response = self._request(
            "POST",
            "/v1/intents",
            params={"wait_ms": wait_ms} if wait_ms else None,
            json=body,
            timeout=self.timeout + wait_ms / 1000.0,
        )
        data = response.json()
        if response.status_code == 202:
            return DecideResult(
                decisions=[Decision.from_dict(d) for d in data.get("decisions", [])],
                pending=list(data.get("pending", [])),
                poll=list(data.get("poll", [])),
            )
        return DecideResult(decisions=[Decision.from_dict(d) for d in data])

    def decision(self, intent_id: str, tenant: Optional[str] = None) -> Decision:
        """An intent's latest decision (``GET /v1/decisions/{intent_id}``).

        A tenant's token implies its tenant; an operator's names it. 404
        (raised) when the instance has read no decision for it.
        """
        response = self._request("GET", f"/v1/decisions/{quote(intent_id, safe='')}", params={"tenant": tenant})
        return Decision.from_dict(response.json())

    def usage(self, scope: str, tenant: Optional[str] = None, sender: Optional[str] = None) -> UsageReport:
        """A scope's windows (``GET /v1/usage``).

        ``scope`` is ``mailbox:A``, ``sender_domain:D``, ``tenant:T``,
        ``recipient:A`` or ``recipient_domain:D``; ``sender`` goes with the
        two recipient scopes.
        """
        response = self._request("GET", "/v1/usage", params={"scope": scope, "tenant": tenant, "sender": sender})
        return UsageReport.from_dict(response.json())

    def simulate(self, intents: Sequence[SendIntent]) -> List[Simulated]:
        """What intents would get now (``POST /v1/simulate``): reserves and publishes nothing."""
        body = [i.to_dict() for i in intents]
        if not body:
            raise ValueError("give at least one intent")
        response = self._request("POST", "/v1/simulate", json=body)
        return [Simulated.from_dict(s) for s in response.json()]

    def explain(self, intent_id: str, tenant: Optional[str] = None) -> Explanation:
        """Why an intent got its latest decision (``GET /v1/explain/{intent_id}``)."""
        response = self._request("GET", f"/v1/explain/{quote(intent_id, safe='')}", params={"tenant": tenant})
        return Explanation.from_dict(response.json())

    def held(self, tenant: Optional[str] = None, limit: Optional[int] = None) -> HeldList:
        """Intents held for approval (``GET /v1/held``), from every instance."""
        response = self._request("GET", "/v1/held", params={"tenant": tenant, "limit": limit})
        return HeldList.from_dict(response.json())

    def _act(
        self, action: str, intent_id: str, tenant: Optional[str], reason: Optional[str], operator: Optional[str]
    ) -> CommandAccepted:
        body: Dict[str, str] = {}
        if reason is not None:
            body["reason"] = reason
        if operator is not None:
            body["operator"] = operator
        response = self._request(
            "POST", f"/v1/held/{quote(intent_id, safe='')}/{action}", params={"tenant": tenant}, json=body
        )
        return CommandAccepted.from_dict(response.json())

    def approve(
        self, intent_id: str, tenant: Optional[str] = None, reason: Optional[str] = None, operator: Optional[str] = None
    ) -> CommandAccepted:
        """Approves a held intent; its new decision follows at :meth:`decision`."""
        return self._act("approve", intent_id, tenant, reason, operator)

    def reject(
        self, intent_id: str, tenant: Optional[str] = None, reason: Optional[str] = None, operator: Optional[str] = None
    ) -> CommandAccepted:
        """Rejects a held intent: it is BLOCKED."""
        return self._act("reject", intent_id, tenant, reason, operator)
