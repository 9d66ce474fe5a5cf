"""The records of sendgate's public contract, as Python dataclasses.

Each dataclass mirrors one Avro schema of the repository's ``schemas/``
directory field for field (``class`` is spelled ``intent_class`` in Python,
where ``class`` is a keyword). ``to_dict()`` gives the record in the form
both the Avro codec and the HTTP API use (enum symbols as strings, ``class``
under its schema name); ``from_dict()`` reads that form back, ignoring keys
it does not know so that newer servers stay readable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional

__all__ = [
    "IntentClass",
    "DeliveryKind",
    "DecisionStatus",
    "SendIntent",
    "DeliveryEvent",
    "Usage",
    "SourceRef",
    "Decision",
    "now_ms",
]


def now_ms() -> int:
    """The wall clock in milliseconds since the Unix epoch."""
    return int(time.time() * 1000)


class IntentClass(str, Enum):
    """What kind of email an intent announces (``SendIntent.class``)."""

    OUTBOUND = "OUTBOUND"
    REPLY = "REPLY"
    TRANSACTIONAL = "TRANSACTIONAL"


class DeliveryKind(str, Enum):
    """What happened to a send (``DeliveryEvent.kind``)."""

    DELIVERED = "DELIVERED"
    BOUNCE_HARD = "BOUNCE_HARD"
    BOUNCE_SOFT = "BOUNCE_SOFT"
    DEFERRED = "DEFERRED"
    REJECTED = "REJECTED"
    COMPLAINT = "COMPLAINT"
    UNSUBSCRIBE = "UNSUBSCRIBE"
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    REPLIED = "REPLIED"


class DecisionStatus(str, Enum):
    """sendgate's answer to an intent (``Decision.status``)."""

    ALLOWED = "ALLOWED"
    DEFERRED = "DEFERRED"
    PAUSED = "PAUSED"
    BLOCKED = "BLOCKED"
    HELD = "HELD"

    @property
    def is_final(self) -> bool:
        """ALLOWED and BLOCKED are final: a resubmitted intent gets them again."""
        return self in (DecisionStatus.ALLOWED, DecisionStatus.BLOCKED)


# Input limits of docs/connecting.md ("Records that cannot be used"), in
# bytes of UTF-8: the processor refuses a record over one of them as a dead
# letter, so the client refuses it before publishing anything.
MAX_RECORD_BYTES = 65_536
_MAX_ID = 256
_MAX_TENANT = 128
_MAX_ADDRESS = 254
_MAX_LOCAL_PART = 64
_MAX_TEMPLATE_ID = 256
_MAX_CONTENT_HASH = 256
_MAX_THREAD_ID = 1_024
_MAX_TEXT = 2_048
_MAX_SHORT_TEXT = 256


def _check_len(record: str, name: str, value: Optional[str], limit: int) -> None:
    if value is not None and len(value.encode("utf-8")) > limit:
        raise ValueError(f"{record}.{name} is {len(value.encode('utf-8'))} bytes; sendgate accepts at most {limit}")


def _check_not_blank(record: str, name: str, value: str) -> None:
    if not value.strip():
        raise ValueError(f"{record}.{name} is empty")


def _check_address(record: str, name: str, value: str) -> None:
    address = value.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{record}.{name} {value!r} is not an email address (local@domain)")
    _check_len(record, name, address, _MAX_ADDRESS)
    if len(local.encode("utf-8")) > _MAX_LOCAL_PART:
        raise ValueError(f"{record}.{name}: the local part is longer than {_MAX_LOCAL_PART} bytes")


@dataclass
class SendIntent:
    """Published by an app before each email; one recipient per intent.

    ``intent_id`` is unique within its tenant and is the idempotency key.
    ``requested_at_ms`` is the client's clock, informational only (it
    defaults to now); sendgate decides on the broker's append time.
    A plain string is accepted for ``intent_class`` and converted.
    """

    intent_id: str
    tenant: str
    sender: str
    recipient: str
    intent_class: IntentClass = IntentClass.OUTBOUND
    template_id: Optional[str] = None
    content_hash: Optional[str] = None
    thread_id: Optional[str] = None
    requires_approval: bool = False
    requested_at_ms: int = field(default_factory=now_ms)

    def __post_init__(self) -> None:
        self.intent_class = IntentClass(self.intent_class)

    def validate(self) -> None:
        """Raises ValueError for what the processor would dead-letter.

        Checks the documented field limits, empty ids and tenants, and that
        both addresses have a local part and a domain. The processor checks
        more (IDNA of the domain, for one); this catches the common cases
        before anything is published.
        """
        _check_not_blank("SendIntent", "intent_id", self.intent_id)
        _check_not_blank("SendIntent", "tenant", self.tenant)
        _check_len("SendIntent", "intent_id", self.intent_id, _MAX_ID)
        _check_len("SendIntent", "tenant", self.tenant, _MAX_TENANT)
        _check_address("SendIntent", "sender", self.sender)
        _check_address("SendIntent", "recipient", self.recipient)
        _check_len("SendIntent", "template_id", self.template_id, _MAX_TEMPLATE_ID)
        _check_len("SendIntent", "content_hash", self.content_hash, _MAX_CONTENT_HASH)
        _check_len("SendIntent", "thread_id", self.thread_id, _MAX_THREAD_ID)

    def to_dict(self) -> Dict[str, Any]:
        """The record as the Avro schema and the HTTP API name its fields."""
        return {
            "intent_id": self.intent_id,
            "tenant": self.tenant,
            "sender": self.sender,
            "recipient": self.recipient,
            "class": IntentClass(self.intent_class).value,
            "template_id": self.template_id,
            "content_hash": self.content_hash,
            "thread_id": self.thread_id,
            "requires_approval": bool(self.requires_approval),
            "requested_at_ms": int(self.requested_at_ms),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SendIntent":
        """Reads the form ``to_dict()`` writes (Avro datum or API JSON)."""
        return cls(
            intent_id=d["intent_id"],
            tenant=d["tenant"],
            sender=d["sender"],
            recipient=d["recipient"],
            intent_class=IntentClass(d["class"]),
            template_id=d.get("template_id"),
            content_hash=d.get("content_hash"),
            thread_id=d.get("thread_id"),
            requires_approval=bool(d.get("requires_approval", False)),
            requested_at_ms=int(d.get("requested_at_ms", 0)),
        )


@dataclass
class DeliveryEvent:
    """Published by a mail pipeline: what happened to a send.

    A ``BOUNCE_HARD`` or ``COMPLAINT`` suppresses the recipient for the
    tenant; ``DEFERRED``/``BOUNCE_SOFT`` with a throttle code (421, 450,
    452) starts an ISP backoff. A plain string is accepted for ``kind``.
    """

    event_id: str
    tenant: str
    sender: str
    recipient: str
    kind: DeliveryKind
    intent_id: Optional[str] = None
    smtp_code: Optional[int] = None
    enhanced_code: Optional[str] = None
    response: Optional[str] = None
    occurred_at_ms: int = field(default_factory=now_ms)
    #: How long the provider asked to wait (an ESP's Retry-After), in seconds.
    retry_after_seconds: Optional[int] = None

    def __post_init__(self) -> None:
        self.kind = DeliveryKind(self.kind)

    def validate(self) -> None:
        """Raises ValueError for what the processor would dead-letter."""
        _check_not_blank("DeliveryEvent", "event_id", self.event_id)
        _check_not_blank("DeliveryEvent", "tenant", self.tenant)
        _check_len("DeliveryEvent", "event_id", self.event_id, _MAX_ID)
        _check_len("DeliveryEvent", "intent_id", self.intent_id, _MAX_ID)
        _check_len("DeliveryEvent", "tenant", self.tenant, _MAX_TENANT)
        _check_address("DeliveryEvent", "sender", self.sender)
        _check_address("DeliveryEvent", "recipient", self.recipient)
        _check_len("DeliveryEvent", "enhanced_code", self.enhanced_code, _MAX_SHORT_TEXT)
        _check_len("DeliveryEvent", "response", self.response, _MAX_TEXT)
        if self.smtp_code is not None and not -(2**31) <= self.smtp_code < 2**31:
            raise ValueError("DeliveryEvent.smtp_code does not fit an Avro int")
        if self.retry_after_seconds is not None and not 0 <= self.retry_after_seconds <= 7 * 24 * 3600:
            raise ValueError("DeliveryEvent.retry_after_seconds must be between 0 and 604800 (a week)")

    def to_dict(self) -> Dict[str, Any]:
        """The record as the Avro schema names its fields."""
        return {
            "event_id": self.event_id,
            "intent_id": self.intent_id,
            "tenant": self.tenant,
            "sender": self.sender,
            "recipient": self.recipient,
            "kind": DeliveryKind(self.kind).value,
            "smtp_code": self.smtp_code,
            "enhanced_code": self.enhanced_code,
            "response": self.response,
            "occurred_at_ms": int(self.occurred_at_ms),
            "retry_after_seconds": self.retry_after_seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DeliveryEvent":
        """Reads the form ``to_dict()`` writes."""
        return cls(
            event_id=d["event_id"],
            intent_id=d.get("intent_id"),
            tenant=d["tenant"],
            sender=d["sender"],
            recipient=d["recipient"],
            kind=DeliveryKind(d["kind"]),
            smtp_code=d.get("smtp_code"),
            enhanced_code=d.get("enhanced_code"),
            response=d.get("response"),
            occurred_at_ms=int(d["occurred_at_ms"]),
            retry_after_seconds=d.get("retry_after_seconds"),
        )


@dataclass
class Usage:
    """One window a decision counted against (an entry of ``Decision.usage``).

    ``scope`` is e.g. ``mailbox:ana@acme.com``; ``window`` is ``minute``,
    ``hour``, ``day`` or ``month``.
    """

    scope: str
    window: str
    used: int
    limit: int
    remaining: int

    def to_dict(self) -> Dict[str, Any]:
        return {
            "scope": self.scope,
            "window": self.window,
            "used": self.used,
            "limit": self.limit,
            "remaining": self.remaining,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Usage":
        return cls(
            scope=d["scope"],
            window=d["window"],
            used=int(d["used"]),
            limit=int(d["limit"]),
            remaining=int(d["remaining"]),
        )


@dataclass
class SourceRef:
    """Where the record a decision answers was read: topic, partition, offset."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> Dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SourceRef":
        return cls(topic=d["topic"], partition=int(d["partition"]), offset=int(d["offset"]))


@dataclass
class Decision:
    """sendgate's answer to one SendIntent.

    ``reason`` is a snake_case code (``ok`` when allowed); ``retry_at_ms``
    says when a DEFERRED intent may be retried; ``decided_at_ms`` is the
    log time the decision was taken at; ``replayed`` is true when it
    repeats the final decision of an earlier intent with the same id.
    """

    intent_id: str
    tenant: str
    sender: str
    recipient: str
    status: DecisionStatus
    reason: str
    usage: List[Usage]
    policy_version: int
    decided_at_ms: int
    source: SourceRef
    retry_at_ms: Optional[int] = None
    stage: Optional[str] = None
    replayed: bool = False

    def __post_init__(self) -> None:
        self.status = DecisionStatus(self.status)

    def to_dict(self) -> Dict[str, Any]:
        """The record as the Avro schema and the HTTP API name its fields."""
        return {
            "intent_id": self.intent_id,
            "tenant": self.tenant,
            "sender": self.sender,
            "recipient": self.recipient,
            "status": DecisionStatus(self.status).value,
            "reason": self.reason,
            "retry_at_ms": self.retry_at_ms,
            "usage": [u.to_dict() for u in self.usage],
            "policy_version": self.policy_version,
            "decided_at_ms": self.decided_at_ms,
            "source": self.source.to_dict(),
            "stage": self.stage,
            "replayed": bool(self.replayed),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Decision":
        """Reads a decision record (Avro datum or API JSON)."""
        retry = d.get("retry_at_ms")
        return cls(
            intent_id=d["intent_id"],
            tenant=d["tenant"],
            sender=d["sender"],
            recipient=d["recipient"],
            status=DecisionStatus(d["status"]),
            reason=d["reason"],
            retry_at_ms=None if retry is None else int(retry),
            usage=[Usage.from_dict(u) for u in d.get("usage", [])],
            policy_version=int(d["policy_version"]),
            decided_at_ms=int(d["decided_at_ms"]),
            source=SourceRef.from_dict(d["source"]),
            stage=d.get("stage"),
            replayed=bool(d.get("replayed", False)),
        )
