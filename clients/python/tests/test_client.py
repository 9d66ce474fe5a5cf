"""Tests of sendgate_client against a real Kafka broker and a real sendgate
processor (with its HTTP API), plus the codec and client behaviour that
needs neither.

Environment (a missing variable fails the tests that need it):
  SENDGATE_TEST_BOOTSTRAP       Kafka bootstrap servers of the processor
  SENDGATE_TEST_NAMESPACE       the processor's namespace
  SENDGATE_TEST_API_URL         its HTTP API, e.g. http://127.0.0.1:9465
  SENDGATE_TEST_OPERATOR_TOKEN  an operator's bearer token
  SENDGATE_TEST_TENANT_TOKEN    the bearer token of tenant "acme"

The processor must run a policy without business hours and warm-up (so an
OUTBOUND intent is allowed at any hour from a new domain); every test uses
its own senders, recipients and intent ids.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

import confluent_kafka
import fastavro
import httpx
import pytest
from fastavro.schema import to_parsing_canonical_form

from sendgate_client import (
    ApiClient,
    ApiError,
    Decision,
    DecisionStatus,
    DecodeError,
    DeliveryEvent,
    DeliveryKind,
    FollowError,
    IntentClass,
    Producer,
    PublishError,
    SendIntent,
    SourceRef,
    Usage,
    UsageReport,
    await_decisions,
    decode_decision,
    decode_delivery_event,
    decode_intent,
    encode,
    fingerprint,
    follow_decisions,
    schema_dir,
)
from sendgate_client.avro import SCHEMA_FILES, Encodable, decode_datum, encode_datum, record_schema

TENANT = "acme"
T = TypeVar("T")


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        pytest.fail(
            f"{name} is not set: these tests need a running Kafka broker and sendgate processor "
            "(see clients/python/README.md, 'Tests')",
            pytrace=False,
        )
    return value


class Live:
    """The broker and processor under test, from the SENDGATE_TEST_* variables.

    Each is read when a test first uses it, so a missing variable fails
    that test (not its set-up) with a message.
    """

    def __init__(self) -> None:
        self._clients: List[ApiClient] = []

    @property
    def kafka(self) -> Dict[str, Any]:
        return {"bootstrap.servers": env("SENDGATE_TEST_BOOTSTRAP")}

    @property
    def namespace(self) -> str:
        return env("SENDGATE_TEST_NAMESPACE")

    def _api(self, token_variable: str) -> ApiClient:
        client = ApiClient(env("SENDGATE_TEST_API_URL"), env(token_variable))
        self._clients.append(client)
        return client

    @functools.cached_property
    def tenant_api(self) -> ApiClient:
        """The API with tenant acme's token."""
        return self._api("SENDGATE_TEST_TENANT_TOKEN")

    @functools.cached_property
    def operator_api(self) -> ApiClient:
        """The API with an operator's token."""
        return self._api("SENDGATE_TEST_OPERATOR_TOKEN")

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture
def live() -> Iterator[Live]:
    resources = Live()
    yield resources
    resources.close()


@pytest.fixture
def names() -> SimpleNamespace:
    """Addresses and ids no other test (or earlier run) uses."""
    run = uuid.uuid4().hex[:10]
    return SimpleNamespace(
        run=run,
        sender=f"ana-{run}@py-{run}.example",
        recipient=lambda n: f"rcpt{n}-{run}@r-{run}.example",
        intent_id=lambda n: f"py-{run}-{n}",
    )


@pytest.fixture
def one_hour() -> None:
    """Keeps a test that counts sends inside one hourly window.

    Hourly windows turn at the top of the hour (the test policy's zone is
    UTC); a test that starts within 30 s of it waits until it has passed.
    """
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 1)


def hour_used(report: UsageReport) -> Optional[int]:
    """What the outbound hourly window of a usage report has used, if it has one."""
    window = report.window("hour")
    return None if window is None else window.used


def intent(names: SimpleNamespace, n: int, **kw: Any) -> SendIntent:
    return SendIntent(names.intent_id(n), TENANT, names.sender, names.recipient(n), **kw)


def eventually(what: str, fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float = 20.0) -> T:
    """Asks again until ``ok`` holds, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: still {value!r} after {timeout} s")
        time.sleep(0.25)


# --- The codec: no broker needed ------------------------------------------------

_EMPTY = 0xC15D213AA4D7A795


def reference_rabin(data: bytes) -> int:
    """CRC-64-AVRO computed bit by bit, as the Avro specification writes it."""
    fp = _EMPTY
    for byte in data:
        fp ^= byte
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
    return fp


def sample_decision() -> Decision:
    return Decision(
        intent_id="i-1",
        tenant=TENANT,
        sender="ana@acme.com",
        recipient="bo@corp.example",
        status=DecisionStatus.DEFERRED,
        reason="hourly_limit_exceeded",
        retry_at_ms=1_700_000_360_000,
        usage=[Usage("mailbox:ana@acme.com", "hour", 3, 3, 0), Usage("sender_domain:acme.com", "day", 10, 1000, 990)],
        policy_version=4,
        decided_at_ms=1_700_000_000_000,
        source=SourceRef("sendgate.intents", 2, 41),
        stage="sender",
        replayed=False,
    )


def test_single_object_bytes_have_the_header_and_fingerprint_and_round_trip() -> None:
    samples: Dict[str, Encodable] = {
        "SendIntent": SendIntent(
            "i-1",
            TENANT,
            "ana@acme.com",
            "bo@corp.example",
            IntentClass.OUTBOUND,
            template_id="t1",
            thread_id="Zürich-Ω",
            requested_at_ms=-5,
        ),
        "DeliveryEvent": DeliveryEvent(
            "e-1",
            TENANT,
            "ana@acme.com",
            "bo@corp.example",
            DeliveryKind.BOUNCE_HARD,
            intent_id="i-1",
            smtp_code=550,
            enhanced_code="5.1.1",
            response="user unknown",
            occurred_at_ms=99,
            retry_after_seconds=30,
        ),
        "Decision": sample_decision(),
    }
    decoders: Dict[str, Callable[[bytes], Any]] = {
        "SendIntent": decode_intent,
        "DeliveryEvent": decode_delivery_event,
        "Decision": decode_decision,
    }
    for name, record in samples.items():
        data = encode(record)
        assert data[:2] == b"\xc3\x01", name
        # The fingerprint: CRC-64-AVRO of the schema file's parsing canonical
        # form, little-endian, computed here independently of the package.
        raw = json.loads((schema_dir() / SCHEMA_FILES[name]).read_text(encoding="utf-8"))
        canonical = to_parsing_canonical_form(fastavro.parse_schema(raw, named_schemas={}))
        assert '"doc"' not in canonical and '"default"' not in canonical
        expected = reference_rabin(canonical.encode()).to_bytes(8, "little")
        assert data[2:10] == expected == fingerprint(name), name
        # fastavro's own implementation agrees (it prints the bytes in header order).
        assert fastavro.schema.fingerprint(canonical, "CRC-64-AVRO") == expected.hex()
        # The body is the plain Avro binary datum.
        body = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(raw, named_schemas={}), None)
        assert body == record.to_dict(), name
        assert decoders[name](data) == record, name

    # A known answer from the Avro project's schema tests: the fingerprint of "int".
    assert reference_rabin(b'"int"') == 8247732601305521295

    data = encode(samples["SendIntent"])
    with pytest.raises(DecodeError, match="expected header C3 01"):
        decode_intent(b"\x00\x00\x00\x00\x01" + data[5:])
    with pytest.raises(DecodeError, match="unknown schema"):
        decode_decision(data)
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode_intent(data + b"\x00")
    with pytest.raises(DecodeError):
        decode_intent(data[:-3])


def test_every_schema_is_found_and_other_record_types_encode() -> None:
    directory = schema_dir()
    for name, file in SCHEMA_FILES.items():
        assert (directory / file).is_file()
        assert record_schema(name).canonical_form.startswith('{"name":"sendgate.' + name + '"')
    print(f"schemas read from {directory}")
    command = {
        "command_id": "c-1",
        "kind": "APPROVE",
        "tenant": TENANT,
        "target": "i-7",
        "sender": "ana@acme.com",
        "reason": None,
        "operator": "oncall",
    }
    data = encode_datum(
        "Command",
        {
            **{f["name"]: f.get("default") for f in json.loads((directory / "command.avsc").read_text())["fields"]},
            **command,
        },
    )
    assert data[2:10] == fingerprint("Command")
    assert decode_datum("Command", data)["target"] == "i-7"
    with pytest.raises(ValueError, match="does not fit"):
        encode_datum("Command", {"command_id": 1})


def test_what_sendgate_would_dead_letter_is_refused_before_publishing(names: SimpleNamespace) -> None:
    good = intent(names, 1)
    with pytest.raises(ValueError, match="intent_id is 257 bytes"):
        encode(SendIntent("x" * 257, TENANT, names.sender, names.recipient(1)))
    with pytest.raises(ValueError, match="not an email address"):
        encode(SendIntent("i", TENANT, "no-at-sign", names.recipient(1)))
    with pytest.raises(ValueError, match="tenant is empty"):
        encode(SendIntent("i", " ", names.sender, names.recipient(1)))
    with pytest.raises(ValueError, match="thread_id"):
        encode(SendIntent("i", TENANT, names.sender, names.recipient(1), thread_id="t" * 1025))
    with pytest.raises(ValueError, match="response"):
        encode(
            DeliveryEvent("e", TENANT, names.sender, names.recipient(1), DeliveryKind.BOUNCE_HARD, response="r" * 2049)
        )
    with pytest.raises(ValueError):
        SendIntent("i", TENANT, names.sender, names.recipient(1), "NEWSLETTER")  # type: ignore[arg-type]
    # A batch with one bad intent is refused whole, before anything is produced
    # (the producer is never asked to connect).
    with Producer({"bootstrap.servers": "127.0.0.1:1"}, "unused", timeout=1.0) as producer:
        with pytest.raises(ValueError):
            producer.publish_intents([good, SendIntent("i", TENANT, names.sender, "nobody")])
    with pytest.raises(ValueError, match="acks"):
        Producer({"bootstrap.servers": "127.0.0.1:1", "acks": "1"})


# --- Over Kafka ---------------------------------------------------------------


def test_intents_published_over_kafka_get_their_decisions(live: Live, names: SimpleNamespace, one_hour: None) -> None:
    kafka_config = live.kafka
    namespace = live.namespace
    intents = [intent(names, n, template_id="intro") for n in (1, 2, 3)]
    with Producer(kafka_config, namespace) as producer:
        published = producer.publish_intents(intents)
    assert [p.record_id for p in published] == [i.intent_id for i in intents]
    assert all(p.topic == f"{namespace}.intents" for p in published)
    assert len({p.partition for p in published}) == 1, "one key (the sender), one partition"
    offsets = [p.offset for p in published]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    since = min(p.timestamp_ms for p in published)
    assert abs(since - time.time() * 1000) < 60_000, "the broker's append time"

    decisions = await_decisions(
        kafka_config, [i.intent_id for i in intents], tenant=TENANT, timeout=30.0, namespace=namespace, since_ms=since
    )
    assert [d.intent_id for d in decisions] == [i.intent_id for i in intents]
    for d, p in zip(decisions, published):
        assert (d.status, d.reason) == (DecisionStatus.ALLOWED, "ok"), d
        assert d.tenant == TENANT and d.sender == names.sender
        assert d.source == SourceRef(p.topic, p.partition, p.offset), "the decision names the intent record"
        assert d.decided_at_ms == p.timestamp_ms
        assert any(u.scope == f"mailbox:{names.sender}" for u in d.usage), d.usage
    assert sorted(
        u.used for d in decisions for u in d.usage if u.scope == f"mailbox:{names.sender}" and u.window == "hour"
    ) == [1, 2, 3]

    # The records sendgate wrote carry the fingerprint computed here.
    topic = f"{namespace}.decisions"
    consumer = confluent_kafka.Consumer(
        {
            **kafka_config,
            "group.id": f"py-raw-{names.run}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        found = consumer.offsets_for_times([confluent_kafka.TopicPartition(topic, p, since) for p in parts], timeout=10)
        consumer.assign(
            [
                confluent_kafka.TopicPartition(
                    topic, tp.partition, tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_END
                )
                for tp in found
            ]
        )
        raw: Optional[bytes] = None
        deadline = time.monotonic() + 20
        while raw is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            value = None if msg is None or msg.error() else msg.value()
            if msg is None or value is None:
                continue
            if decode_decision(value).intent_id == intents[0].intent_id:
                raw = value
                assert msg.key() == names.sender.encode(), "decisions are keyed by sender"
        assert raw is not None, "the decision record was read back"
        assert raw[:2] == b"\xc3\x01" and raw[2:10] == fingerprint("Decision")
    finally:
        consumer.close()

    # The same decisions, followed through a consumer group of the caller's.
    followed = list(
        follow_decisions(
            kafka_config,
            namespace,
            tenant=TENANT,
            intent_ids=[i.intent_id for i in intents],
            group_id=f"py-follow-{names.run}",
            start="beginning",
            timeout=30.0,
        )
    )
    assert sorted(d.intent_id for d in followed) == sorted(i.intent_id for i in intents)
    # Assigned partitions, from the beginning of the topic.
    from_start = list(
        follow_decisions(kafka_config, namespace, intent_ids=[intents[2].intent_id], start="beginning", timeout=30.0)
    )
    assert [d.intent_id for d in from_start] == [intents[2].intent_id]
    # Without since_ms, await_decisions looks back a few minutes.
    assert await_decisions(kafka_config, [intents[1].intent_id], tenant=TENANT, timeout=30.0, namespace=namespace) == [
        decisions[1]
    ]
    # From the end, decisions already made are not read again; another
    # tenant's filter finds nothing; either way the wait is bounded.
    started = time.monotonic()
    assert (
        list(
            follow_decisions(
                kafka_config, namespace, tenant=TENANT, intent_ids=[intents[0].intent_id], start="end", timeout=3.0
            )
        )
        == []
    )
    assert (
        list(
            follow_decisions(
                kafka_config, namespace, tenant="nobody", intent_ids=[intents[0].intent_id], start=since, timeout=3.0
            )
        )
        == []
    )
    assert time.monotonic() - started < 20
    with pytest.raises(FollowError, match="cannot be read"):
        next(follow_decisions(kafka_config, f"py-missing-{names.run}", timeout=10.0))


def test_records_the_broker_does_not_acknowledge_raise_publish_error(names: SimpleNamespace) -> None:
    started = time.monotonic()
    with Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0}, "unused", timeout=2.0) as producer:
        with pytest.raises(PublishError) as failed:
            producer.publish_intents([intent(names, 1), intent(names, 2)])
    assert failed.value.published == []
    assert len(failed.value.failures) + failed.value.unacknowledged == 2, failed.value
    assert time.monotonic() - started < 20


def test_a_hard_bounce_blocks_later_intents_to_that_recipient(live: Live, names: SimpleNamespace) -> None:
    kafka_config = live.kafka
    namespace = live.namespace
    tenant_api = live.tenant_api
    bounced = names.recipient(1)
    bounce = DeliveryEvent(
        f"ev-{names.run}",
        TENANT,
        names.sender,
        bounced,
        DeliveryKind.BOUNCE_HARD,
        smtp_code=550,
        enhanced_code="5.1.1",
        response="550 5.1.1 user unknown",
    )
    with Producer(kafka_config, namespace) as producer:
        [delivered] = producer.publish_delivery([bounce])
        assert delivered.topic == f"{namespace}.delivery" and delivered.record_id == bounce.event_id
        published = producer.publish_intents([intent(names, 1), intent(names, 2)])
    assert published[0].timestamp_ms >= delivered.timestamp_ms
    to_bounced, to_other = await_decisions(
        kafka_config,
        [names.intent_id(1), names.intent_id(2)],
        tenant=TENANT,
        timeout=30.0,
        namespace=namespace,
        since_ms=min(p.timestamp_ms for p in published),
    )
    assert (to_bounced.status, to_bounced.reason) == (DecisionStatus.BLOCKED, "recipient_suppressed"), to_bounced
    assert to_bounced.recipient == bounced
    assert to_other.status == DecisionStatus.ALLOWED, "only the bounced recipient is suppressed"

    why = tenant_api.explain(names.intent_id(1))
    assert why.decision.intent_id == names.intent_id(1) and why.decision.status == DecisionStatus.BLOCKED
    assert why.checks, "the checks behind the decision"
    assert why.decided_by is not None, why
    assert (why.decided_by.stage, why.decided_by.check) == ("recipient", "suppression"), why.decided_by
    assert why.decided_by.outcome != "pass" and "suppressed" in why.decided_by.detail, why.decided_by


# --- Over the HTTP API --------------------------------------------------------


def test_decide_over_the_api_returns_a_batchs_decisions_in_order(live: Live, names: SimpleNamespace) -> None:
    tenant_api = live.tenant_api
    intents = [intent(names, n) for n in (3, 1, 2)]
    result = tenant_api.decide(intents, wait_ms=20_000)
    assert result.complete and result.pending == [] and result.poll == []
    assert [d.intent_id for d in result.decisions] == [names.intent_id(3), names.intent_id(1), names.intent_id(2)]
    assert [d.recipient for d in result.decisions] == [i.recipient for i in intents]
    assert all(d.status == DecisionStatus.ALLOWED for d in result.decisions), result.decisions
    assert tenant_api.decision(names.intent_id(1)) == result.decisions[1]

    # Without a wait: 202, everything pending, with where to poll.
    later = tenant_api.decide([intent(names, 4, intent_class=IntentClass.REPLY)], wait_ms=0)
    assert not later.complete and later.pending == [names.intent_id(4)] and later.decisions == []
    assert later.poll == [f"/v1/decisions/{names.intent_id(4)}?tenant={TENANT}"]
    polled = eventually(
        "the pending decision", lambda: _decision_or_none(tenant_api, names.intent_id(4)), lambda d: d is not None
    )
    assert polled is not None and polled.status == DecisionStatus.ALLOWED

    with pytest.raises(ApiError) as refused:
        tenant_api.decide([SendIntent(names.intent_id(5), TENANT, names.sender, "nobody")], wait_ms=1000)
    assert refused.value.status == 400 and "recipient" in refused.value.message
    with pytest.raises(ApiError) as unknown:
        tenant_api.decision(f"never-{names.run}")
    assert unknown.value.status == 404 and "no decision" in unknown.value.message


def _decision_or_none(api: ApiClient, intent_id: str) -> Optional[Decision]:
    try:
        return api.decision(intent_id)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def test_usage_counts_the_sends(live: Live, names: SimpleNamespace, one_hour: None) -> None:
    tenant_api = live.tenant_api
    result = tenant_api.decide([intent(names, 1), intent(names, 2)], wait_ms=20_000)
    assert [d.status for d in result.decisions] == [DecisionStatus.ALLOWED] * 2
    scope = f"mailbox:{names.sender}"
    report = eventually(
        "the mailbox's hourly window",
        lambda: tenant_api.usage(scope),
        lambda u: hour_used(u) == 2,
    )
    assert report.scope == scope
    hour = report.window("hour")
    assert hour is not None and (hour.used, hour.limit, hour.remaining) == (2, 3, 1)
    day = report.window("day")
    assert day is not None and day.used == 2 and day.limit == 25
    assert hour.resets_at_ms > time.time() * 1000
    assert report.signals is not None and report.paused is None

    domain = tenant_api.usage(f"sender_domain:py-{names.run}.example")
    assert hour_used(domain) == 2, domain
    recipient = tenant_api.usage(f"recipient:{names.recipient(1)}", sender=names.sender)
    assert any(w.used == 1 for w in recipient.windows), recipient


def test_simulate_reserves_nothing(live: Live, names: SimpleNamespace, one_hour: None) -> None:
    tenant_api = live.tenant_api
    scope = f"mailbox:{names.sender}"
    # Intents of one simulation see each other: the hourly cap of 3 binds at the fourth.
    simulated = tenant_api.simulate([intent(names, n) for n in (1, 2, 3, 4)])
    assert [s.decision.intent_id for s in simulated] == [names.intent_id(n) for n in (1, 2, 3, 4)]
    assert [s.decision.status for s in simulated] == [DecisionStatus.ALLOWED] * 3 + [DecisionStatus.DEFERRED]
    assert simulated[3].decision.reason == "hourly_limit_exceeded" and simulated[3].decision.retry_at_ms is not None
    assert all(s.checks for s in simulated)
    assert any(c.outcome != "pass" for c in simulated[3].checks)
    untouched = tenant_api.usage(scope)
    assert all(w.used == 0 for w in untouched.windows), untouched

    first = tenant_api.decide([intent(names, 5)], wait_ms=20_000)
    assert first.decisions[0].status == DecisionStatus.ALLOWED
    before = eventually(
        "the real send counted",
        lambda: tenant_api.usage(scope),
        lambda u: hour_used(u) == 1,
    )
    again = tenant_api.simulate([intent(names, 6), intent(names, 7)])
    assert [s.decision.status for s in again] == [DecisionStatus.ALLOWED] * 2
    after = tenant_api.usage(scope)
    assert [(w.scope, w.window, w.used) for w in after.windows] == [(w.scope, w.window, w.used) for w in before.windows]
    # And the simulated intents were never published.
    with pytest.raises(ApiError) as none:
        tenant_api.decision(names.intent_id(1))
    assert none.value.status == 404


def test_a_tenant_token_cannot_act_for_another_tenant(live: Live, names: SimpleNamespace) -> None:
    tenant_api = live.tenant_api
    operator_api = live.operator_api
    other = SendIntent(names.intent_id(1), "globex", names.sender, names.recipient(1))
    with pytest.raises(ApiError) as publish:
        tenant_api.decide([other], wait_ms=1000)
    assert publish.value.status == 403 and "another tenant" in publish.value.message
    with pytest.raises(ApiError) as usage:
        tenant_api.usage("tenant:globex")
    assert usage.value.status == 403
    with pytest.raises(ApiError) as decision:
        tenant_api.decision(names.intent_id(1), tenant="globex")
    assert decision.value.status == 403
    with pytest.raises(ApiError) as approve:
        tenant_api.approve(names.intent_id(1), tenant="globex")
    assert approve.value.status == 403
    # The operator may act for any tenant.
    assert operator_api.usage("tenant:globex").scope == "tenant:globex"
    with pytest.raises(ApiError) as bad_token:
        ApiClient(env("SENDGATE_TEST_API_URL"), "not-a-token-of-this-processor").usage("tenant:acme")
    assert bad_token.value.status == 401


def test_held_intents_are_listed_approved_and_rejected(live: Live, names: SimpleNamespace) -> None:
    tenant_api = live.tenant_api
    operator_api = live.operator_api
    held = tenant_api.decide(
        [intent(names, 1, requires_approval=True), intent(names, 2, requires_approval=True)], wait_ms=20_000
    )
    assert [(d.status, d.reason) for d in held.decisions] == [(DecisionStatus.HELD, "pending_approval")] * 2
    ids = {names.intent_id(1), names.intent_id(2)}
    listed = tenant_api.held(limit=1000)
    assert ids <= {i.intent_id for i in listed.held}, listed
    assert listed.covers and listed.missing == []
    assert all(i.requires_approval for i in listed.held if i.intent_id in ids)
    assert ids <= {i.intent_id for i in operator_api.held(tenant=TENANT, limit=1000).held}

    approved = tenant_api.approve(names.intent_id(1), reason="checked by hand")
    assert (approved.kind, approved.tenant, approved.target) == ("APPROVE", TENANT, names.intent_id(1))
    rejected = operator_api.reject(names.intent_id(2), tenant=TENANT, reason="not this one", operator="oncall")
    assert (rejected.kind, rejected.target) == ("REJECT", names.intent_id(2))

    one = eventually(
        "the approved intent's decision",
        lambda: tenant_api.decision(names.intent_id(1)),
        lambda d: d.status != DecisionStatus.HELD,
    )
    assert one.status == DecisionStatus.ALLOWED, one
    two = eventually(
        "the rejected intent's decision",
        lambda: tenant_api.decision(names.intent_id(2)),
        lambda d: d.status != DecisionStatus.HELD,
    )
    assert two.status == DecisionStatus.BLOCKED, two
    eventually("the held list", lambda: {i.intent_id for i in tenant_api.held(limit=1000).held} & ids, lambda s: not s)
    with pytest.raises(ApiError) as gone:
        tenant_api.approve(names.intent_id(1))
    assert gone.value.status == 404


# --- Client behaviour: retries and TLS ----------------------------------------


def test_retry_after_is_honoured_on_503_a_bounded_number_of_times() -> None:
    usage_body = {"scope": "tenant:acme", "policy_version": 0, "windows": []}
    seen: List[httpx.Request] = []

    def answers(*responses: httpx.Response) -> httpx.MockTransport:
        queue = list(responses)

        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return queue.pop(0)

        return httpx.MockTransport(handle)

    def busy() -> httpx.Response:
        return httpx.Response(
            503, headers={"Retry-After": "0"}, json={"error": "no instance serves sender partition 3 right now; retry"}
        )

    explaining = httpx.Response(
        429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, json={"error": "another explanation is running"}
    )
    with ApiClient(
        "http://sendgate.invalid",
        "t" * 32,
        max_retries=2,
        transport=answers(busy(), explaining, httpx.Response(200, json=usage_body)),
    ) as api:
        assert api.usage("tenant:acme").scope == "tenant:acme"
    assert len(seen) == 3
    assert seen[0].headers["Authorization"] == "Bearer " + "t" * 32
    assert seen[0].url.params["scope"] == "tenant:acme"

    seen.clear()
    with ApiClient(
        "http://sendgate.invalid", "t" * 32, max_retries=2, transport=answers(busy(), busy(), busy())
    ) as api:
        with pytest.raises(ApiError) as gave_up:
            api.usage("tenant:acme")
    assert len(seen) == 3 and gave_up.value.status == 503 and gave_up.value.retry_after == 0
    assert gave_up.value.message == "no instance serves sender partition 3 right now; retry"

    seen.clear()
    with ApiClient(
        "http://sendgate.invalid",
        "t" * 32,
        transport=answers(httpx.Response(503, json={"error": "intents publisher: down"})),
    ) as api:
        with pytest.raises(ApiError) as no_retry:
            api.decide([SendIntent("i", TENANT, "a@b.example", "c@d.example")])
    assert len(seen) == 1 and no_retry.value.retry_after is None, "no Retry-After, no retry"

    seen.clear()
    started = time.monotonic()
    with ApiClient(
        "http://sendgate.invalid",
        "t" * 32,
        max_retry_after=0.2,
        transport=answers(httpx.Response(503, headers={"Retry-After": "60"}), httpx.Response(200, json=usage_body)),
    ) as api:
        api.usage("tenant:acme")
    assert len(seen) == 2 and 0.15 < time.monotonic() - started < 5, "each wait is capped"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = json.dumps(sample_decision().to_dict()).encode()
        self.send_response(200 if self.headers.get("Authorization") == "Bearer " + "s" * 32 else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_https_with_a_ca_file(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("this test needs the openssl command (Debian package openssl)", pytrace=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        with ApiClient(url, "s" * 32, ca_file=str(cert), timeout=10) as api:
            assert api.decision("i-1") == sample_decision()
        with ApiClient(url, "s" * 32, timeout=10) as api:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                api.decision("i-1")
        with ApiClient(url, "s" * 32, verify=False, timeout=10) as api:
            assert api.decision("i-1").intent_id == "i-1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- The example --------------------------------------------------------------


def test_the_quickstart_example_runs_and_prints_decisions(
    tmp_path: Path, names: SimpleNamespace, one_hour: None
) -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "quickstart.py"
    run_env = dict(os.environ)
    run_env.update(
        SENDGATE_BOOTSTRAP=env("SENDGATE_TEST_BOOTSTRAP"),
        SENDGATE_NAMESPACE=env("SENDGATE_TEST_NAMESPACE"),
        SENDGATE_API_URL=env("SENDGATE_TEST_API_URL"),
        SENDGATE_API_TOKEN=env("SENDGATE_TEST_TENANT_TOKEN"),
        SENDGATE_TENANT=TENANT,
        SENDGATE_SENDER=names.sender,
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    out = done.stdout
    print(out)
    followed = out.split("decisions followed on the decisions topic:\n", 1)[1].split("decision through the API:\n", 1)[
        0
    ]
    assert len([line for line in followed.splitlines() if " ALLOWED " in line]) == 3, out
    via_api = out.split("decision through the API:\n", 1)[1].split("usage of ", 1)[0]
    assert "-reply" in via_api and " ALLOWED " in via_api, out
    assert f"usage of mailbox:{names.sender}" in out
    assert f"mailbox:{names.sender} outbound/hour: 3 of 3 used, 0 left" in out, out

    missing = {k: v for k, v in run_env.items() if k != "SENDGATE_API_TOKEN"}
    refused = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=missing, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "SENDGATE_API_TOKEN" in refused.stderr
