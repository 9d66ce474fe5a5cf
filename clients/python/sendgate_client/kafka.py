"""Publishing intents and delivery events, and following decisions, over Kafka.

Topics are ``<namespace>.intents``, ``<namespace>.delivery`` and
``<namespace>.decisions`` (the namespace is ``sendgate`` unless the
processor is configured otherwise). Records are keyed by their sender
address, as sendgate's own producers (its CLI and its HTTP API) key them,
and written as Avro single object (:mod:`sendgate_client.avro`).

Every function takes a dict of confluent-kafka (librdkafka) settings:
``bootstrap.servers`` and whatever the cluster needs besides
(``security.protocol``, ``sasl.mechanism``, ``ssl.ca.location``, ...).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from . import avro
from .errors import DecisionTimeout, DecodeError, FollowError, PublishError
from .records import Decision, DeliveryEvent, SendIntent, now_ms

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_LOOKBACK_MS",
    "Published",
    "Producer",
    "topic_name",
    "follow_decisions",
    "await_decisions",
]

#: The processor's namespace unless it is configured otherwise.
DEFAULT_NAMESPACE = "sendgate"
#: How far back ``await_decisions`` looks when it is not told where to start.
DEFAULT_LOOKBACK_MS = 300_000


def topic_name(namespace: str, name: str) -> str:
    """The full name of one of sendgate's topics: ``<namespace>.<name>``."""
    return f"{namespace}.{name}"


@dataclass(frozen=True)
class Published:
    """Where the broker stored one published record.

    ``record_id`` is the intent's ``intent_id`` or the event's ``event_id``;
    ``timestamp_ms`` is the broker's append time on the input topics (which
    use LogAppendTime): the "now" sendgate decides the intent at. A decision
    is timestamped with the time it was decided at, never earlier, so it is
    a safe ``since_ms`` for :func:`await_decisions`.
    """

    record_id: str
    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def _forced(config: Mapping[str, Any], key: str, value: str, accepted: Sequence[str]) -> None:
    if key in config and str(config[key]).lower() not in accepted:
        raise ValueError(f"{key}={config[key]!r} is not supported here; this client sets {key}={value}")


class Producer:
    """Publishes send intents and delivery events.

    An idempotent producer with ``acks=all`` (both are set here; a config
    that contradicts them is refused). Each ``publish_*`` call validates
    and encodes every record before producing any, then waits until every
    record is acknowledged: a record the broker refused, or one without an
    answer after ``timeout`` seconds, raises :class:`PublishError`.

    ``config`` is any confluent-kafka producer configuration; unless it sets
    ``message.timeout.ms`` (or its alias ``delivery.timeout.ms``) the client
    sets it to ``timeout``, so an unacknowledged record fails rather than
    being delivered later.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, config: Mapping[str, Any], namespace: str = DEFAULT_NAMESPACE, *, timeout: float = 30.0) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        _forced(config, "enable.idempotence", "true", ("true", "1"))
        _forced(config, "acks", "all", ("all", "-1"))
        conf: Dict[str, Any] = dict(config)
        conf["enable.idempotence"] = True
        conf["acks"] = "all"
        if "message.timeout.ms" not in conf and "delivery.timeout.ms" not in conf:
            conf["message.timeout.ms"] = int(timeout * 1000)
        self.namespace = namespace
        self.timeout = timeout
        self._producer = confluent_kafka.Producer(conf)
        self._closed = False

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits (up to ``timeout``) for anything still queued, then stops using the producer."""
        if not self._closed:
            self._closed = True
            self._producer.flush(self.timeout)

    def publish_intents(self, intents: Iterable[SendIntent]) -> List[Published]:
        """Publishes intents to ``<namespace>.intents``, keyed by sender.

        Returns where each was stored, in the order given. Raises ValueError
        (nothing published) when an intent would be refused by the
        processor, :class:`PublishError` when the broker did not
        acknowledge every record.
        """
        records = [(i.intent_id, i.sender.encode("utf-8"), avro.encode(i)) for i in intents]
        return self._publish(topic_name(self.namespace, "intents"), records)

    def publish_delivery(self, events: Iterable[DeliveryEvent]) -> List[Published]:
        """Publishes delivery events to ``<namespace>.delivery``, keyed by sender.

        Same guarantees and errors as :meth:`publish_intents`.
        """
        records = [(e.event_id, e.sender.encode("utf-8"), avro.encode(e)) for e in events]
        return self._publish(topic_name(self.namespace, "delivery"), records)

    def _publish(self, topic: str, records: List[Tuple[str, bytes, bytes]]) -> List[Published]:
        if self._closed:
            raise PublishError("the producer is closed")
        results: List[Optional[Published]] = [None] * len(records)
        failures: List[Tuple[int, str]] = []

        def on_delivery_of(index: int, record_id: str) -> Callable[[Optional[KafkaError], Any], None]:
            def on_delivery(err: Optional[KafkaError], msg: Any) -> None:
                if err is not None:
                    failures.append((index, f"{record_id}: {err.str()}"))
                    return
                _, ts = msg.timestamp()
                results[index] = Published(record_id, msg.topic(), msg.partition(), msg.offset(), ts)

            return on_delivery

        deadline = time.monotonic() + self.timeout
        for index, (record_id, key, value) in enumerate(records):
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=on_delivery_of(index, record_id))
                    break
                except BufferError:
                    # The local queue is full: serve delivery reports until it drains.
                    if time.monotonic() >= deadline:
                        raise PublishError(
                            f"the producer's queue stayed full for {self.timeout} s; "
                            f"{index} of {len(records)} records queued",
                            published=[r for r in results if r is not None],
                            failures=failures,
                            unacknowledged=index - sum(r is not None for r in results) - len(failures),
                        ) from None
                    self._producer.poll(0.05)
                except KafkaException as e:
                    raise PublishError(
                        f"{record_id}: {e}",
                        published=[r for r in results if r is not None],
                        failures=failures,
                    ) from e
            self._producer.poll(0)
        # message.timeout.ms bounds each record; wait a little past it so
        # that its failure, not silence, is what comes back.
        waiting = self._producer.flush(max(0.0, deadline - time.monotonic()) + 5.0)
        published = [r for r in results if r is not None]
        if failures or waiting:
            failures.sort()
            detail = "; ".join(reason for _, reason in failures[:5])
            raise PublishError(
                f"{len(failures)} of {len(records)} records refused, {waiting} without an answer"
                + (f": {detail}" if detail else ""),
                published=published,
                failures=failures,
                unacknowledged=waiting,
            )
        return published


_FATAL_READ_ERRORS = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
}

Start = Union[str, int]


def _consumer_config(config: Mapping[str, Any], group_id: Optional[str], start: Start) -> Dict[str, Any]:
    _forced(config, "isolation.level", "read_committed", ("read_committed",))
    conf: Dict[str, Any] = dict(config)
    conf["isolation.level"] = "read_committed"
    conf.setdefault("enable.partition.eof", False)
    if group_id is not None:
        if not isinstance(start, str) or start not in ("end", "beginning"):
            raise ValueError("with a group, start is 'end' or 'beginning' (where the group has no committed offset)")
        conf["group.id"] = group_id
        conf.setdefault("auto.offset.reset", "latest" if start == "end" else "earliest")
    else:
        # No group is joined (partitions are assigned) and nothing is committed;
        # the client library still wants a group id.
        conf.setdefault("group.id", f"sendgate-client-follow-{uuid.uuid4().hex}")
        conf["enable.auto.commit"] = False
        conf["enable.auto.offset.store"] = False
    return conf


def _assign_all(consumer: "confluent_kafka.Consumer", topic: str, start: Start, deadline: Optional[float]) -> None:
    def left(cap: float) -> float:
        return cap if deadline is None else max(0.1, min(cap, deadline - time.monotonic()))

    meta = consumer.list_topics(topic, timeout=left(10.0))
    tmeta = meta.topics.get(topic)
    if tmeta is None or tmeta.error is not None or not tmeta.partitions:
        reason = tmeta.error.str() if tmeta is not None and tmeta.error is not None else "no partitions"
        raise FollowError(
            f"topic {topic} cannot be read: {reason} (is the namespace right, and are the topics created?)"
        )
    partitions = sorted(tmeta.partitions)
    if start == "end":
        tps = [TopicPartition(topic, p, confluent_kafka.OFFSET_END) for p in partitions]
    elif start == "beginning":
        tps = [TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions]
    elif isinstance(start, int) and not isinstance(start, bool):
        wanted = [TopicPartition(topic, p, start) for p in partitions]
        found = consumer.offsets_for_times(wanted, timeout=left(10.0))
        tps = []
        for tp in found:
            if tp.error is not None:
                raise FollowError(f"{topic} [{tp.partition}]: cannot find the offset of time {start}: {tp.error}")
            # No record at or after that time: start at the end.
            offset = tp.offset if tp.offset >= 0 else confluent_kafka.OFFSET_END
            tps.append(TopicPartition(topic, tp.partition, offset))
    else:
        raise ValueError(f"start is 'end', 'beginning' or a time in ms since the epoch, not {start!r}")
    consumer.assign(tps)


def follow_decisions(
    config: Mapping[str, Any],
    namespace: str = DEFAULT_NAMESPACE,
    *,
    tenant: Optional[str] = None,
    intent_ids: Optional[Iterable[str]] = None,
    group_id: Optional[str] = None,
    start: Start = "end",
    timeout: Optional[float] = 30.0,
) -> Iterator[Decision]:
    """Yields decisions from ``<namespace>.decisions``, read committed.

    Without ``group_id`` every partition is assigned to this reader (no
    group is joined, nothing is committed) and reading starts at ``start``:
    ``"end"`` (only decisions made from now on), ``"beginning"``, or a time
    in ms since the epoch (decisions are timestamped with the log time they
    were decided at, so the ``timestamp_ms`` of a :class:`Published` record
    finds every decision of that intent). With ``group_id`` the reader joins
    that consumer group (offsets committed as the group's settings say) and
    ``start`` (``"end"`` or ``"beginning"``) applies only where the group
    has no committed offset.

    Only decisions of ``tenant`` (when given) and of ``intent_ids`` (when
    given) are yielded; with ``intent_ids`` the generator ends once each of
    them has had a decision. It also ends when ``timeout`` seconds have
    passed (``None``: follow until the caller stops). Closing the
    generator closes the consumer.

    Raises :class:`FollowError` when the topic cannot be read and
    :class:`~sendgate_client.errors.DecodeError` for a record that is not a
    decision of this schema.
    """
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must not be negative")
    wanted: Optional[Set[str]] = set(intent_ids) if intent_ids is not None else None
    topic = topic_name(namespace, "decisions")
    conf = _consumer_config(config, group_id, start)
    deadline = None if timeout is None else time.monotonic() + timeout
    consumer = confluent_kafka.Consumer(conf)
    try:
        if wanted is not None and not wanted:
            return
        if group_id is None:
            _assign_all(consumer, topic, start, deadline)
        else:
            consumer.subscribe([topic])
        while True:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                return
            msg = consumer.poll(wait)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or err.code() in _FATAL_READ_ERRORS:
                    raise FollowError(f"reading {topic}: {err.str()}")
                continue  # transient: the client retries by itself
            value = msg.value()
            if value is None:
                continue
            try:
                decision = avro.decode_decision(value)
            except DecodeError as e:
                raise DecodeError(f"{topic} [{msg.partition()}] at offset {msg.offset()}: {e}") from e
            if tenant is not None and decision.tenant != tenant:
                continue
            if wanted is not None and decision.intent_id not in wanted:
                continue
            yield decision
            if wanted is not None:
                wanted.discard(decision.intent_id)
                if not wanted:
                    return
    finally:
        consumer.close()


def await_decisions(
    config: Mapping[str, Any],
    intent_ids: Iterable[str],
    tenant: Optional[str] = None,
    timeout: float = 30.0,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    since_ms: Optional[int] = None,
) -> List[Decision]:
    """Waits for a decision of each intent and returns them in the order asked.

    Reads the decisions topic from ``since_ms`` (default: five minutes
    ago); pass the earliest ``timestamp_ms`` of the records
    :meth:`Producer.publish_intents` returned to take only the decisions of
    that submission. The first decision read for each id is the one
    returned. Intent ids are unique within a tenant: give ``tenant``
    unless the ids are unique across tenants.

    Raises :class:`DecisionTimeout` (carrying the decisions that came)
    when ``timeout`` seconds pass first.
    """
    ids: List[str] = list(dict.fromkeys(intent_ids))
    start = now_ms() - DEFAULT_LOOKBACK_MS if since_ms is None else since_ms
    found: Dict[str, Decision] = {}
    for decision in follow_decisions(config, namespace, tenant=tenant, intent_ids=ids, start=start, timeout=timeout):
        found.setdefault(decision.intent_id, decision)
    missing = [i for i in ids if i not in found]
    if missing:
        raise DecisionTimeout(
            f"no decision within {timeout} s for {len(missing)} of {len(ids)} intents: {', '.join(missing[:10])}",
            decisions=[found[i] for i in ids if i in found],
            missing=missing,
        )
    return [found[i] for i in ids]
