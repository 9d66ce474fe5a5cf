"""Python client of sendgate, the Kafka stream processor that guards email
sender reputation.

* :class:`Producer` publishes send intents and delivery events to the
  processor's input topics (Avro single object, keyed by sender).
* :func:`follow_decisions` and :func:`await_decisions` read the decisions
  topic, read committed.
* :class:`ApiClient` talks to the processor's HTTP API: request-reply
  decisions, usage, simulation, explanations, held intents.
* :mod:`sendgate_client.avro` encodes and decodes the records exactly as
  the processor does.
"""

from .api import (
    ApiClient,
    Check,
    CommandAccepted,
    DecideResult,
    Explanation,
    HeldList,
    PolicyDocumentRef,
    SignalEvent,
    Signals,
    Simulated,
    UsageReport,
    UsageWindow,
)
from .avro import decode_decision, decode_delivery_event, decode_intent, encode, fingerprint, schema_dir
from .errors import (
    ApiError,
    DecisionTimeout,
    DecodeError,
    FollowError,
    PublishError,
    SchemaError,
    SendgateError,
)
from .kafka import DEFAULT_NAMESPACE, Producer, Published, await_decisions, follow_decisions, topic_name
from .records import (
    Decision,
    DecisionStatus,
    DeliveryEvent,
    DeliveryKind,
    IntentClass,
    SendIntent,
    SourceRef,
    Usage,
    now_ms,
)

__version__ = "0.1.0"

__all__ = [
    "ApiClient",
    "ApiError",
    "Check",
    "CommandAccepted",
    "DEFAULT_NAMESPACE",
    "DecideResult",
    "Decision",
    "DecisionStatus",
    "DecisionTimeout",
    "DecodeError",
    "DeliveryEvent",
    "DeliveryKind",
    "Explanation",
    "FollowError",
    "HeldList",
    "IntentClass",
    "PolicyDocumentRef",
    "Producer",
    "PublishError",
    "Published",
    "SchemaError",
    "SendIntent",
    "SendgateError",
    "SignalEvent",
    "Signals",
    "Simulated",
    "SourceRef",
    "Usage",
    "UsageReport",
    "UsageWindow",
    "await_decisions",
    "decode_decision",
    "decode_delivery_event",
    "decode_intent",
    "encode",
    "fingerprint",
    "follow_decisions",
    "now_ms",
    "schema_dir",
    "topic_name",
]
