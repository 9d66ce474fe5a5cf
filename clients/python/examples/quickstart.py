"""sendgate quickstart: publish intents over Kafka, follow their decisions,
ask for one decision through the HTTP API, and show the mailbox's usage.

    SENDGATE_API_TOKEN=... python examples/quickstart.py

Environment:
  SENDGATE_BOOTSTRAP   Kafka bootstrap servers     (default 127.0.0.1:9092)
  SENDGATE_NAMESPACE   the processor's namespace   (default sendgate)
  SENDGATE_API_URL     the processor's HTTP API    (default http://127.0.0.1:9465)
  SENDGATE_API_TOKEN   a bearer token of the tenant (or an operator's); required
  SENDGATE_TENANT      the tenant the intents are of (default acme)
  SENDGATE_SENDER      the mailbox that sends       (default ana@acme.com)
"""

from __future__ import annotations

import datetime
import os
import sys
import uuid

from sendgate_client import (
    ApiClient,
    Decision,
    DecisionStatus,
    IntentClass,
    Producer,
    SendIntent,
    await_decisions,
)


def at(ms: int) -> str:
    """A time in ms since the epoch, as UTC ISO 8601."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(d: Decision) -> str:
    """One line per decision: id, recipient, status, reason and when to retry."""
    line = f"  {d.intent_id:<18} {d.recipient:<30} {d.status.value:<8} {d.reason}"
    if d.status == DecisionStatus.DEFERRED and d.retry_at_ms is not None:
        line += f" (retry at {at(d.retry_at_ms)})"
    return line


def main() -> int:
    bootstrap = os.environ.get("SENDGATE_BOOTSTRAP", "127.0.0.1:9092")
    namespace = os.environ.get("SENDGATE_NAMESPACE", "sendgate")
    api_url = os.environ.get("SENDGATE_API_URL", "http://127.0.0.1:9465")
    token = os.environ.get("SENDGATE_API_TOKEN", "")
    tenant = os.environ.get("SENDGATE_TENANT", "acme")
    sender = os.environ.get("SENDGATE_SENDER", "ana@acme.com")
    if not token:
        print("set SENDGATE_API_TOKEN to a bearer token of the API (one of SENDGATE_API_TOKENS)", file=sys.stderr)
        return 2

    run = uuid.uuid4().hex[:8]
    kafka = {"bootstrap.servers": bootstrap}

    # 1. Publish a few intents over Kafka, keyed by sender. Recipients are
    #    new on every run, so no per-recipient cooldown or cap from an
    #    earlier run applies; the mailbox's own caps do (3 cold sends an
    #    hour by default: run it twice within the hour to see DEFERRED).
    recipients = [f"bo-{run}@corp.example", f"cy-{run}@corp.example", f"di-{run}@partner.example"]
    intents = [
        SendIntent(f"qs-{run}-{n}", tenant, sender, recipient, IntentClass.OUTBOUND, template_id="intro")
        for n, recipient in enumerate(recipients, start=1)
    ]
    with Producer(kafka, namespace) as producer:
        published = producer.publish_intents(intents)
    print(f"published {len(published)} intents to {namespace}.intents as {sender}")

    # 2. Follow their decisions on the decisions topic (read committed),
    #    from the broker's append time of the first one.
    decisions = await_decisions(
        kafka,
        [i.intent_id for i in intents],
        tenant=tenant,
        timeout=30.0,
        namespace=namespace,
        since_ms=min(p.timestamp_ms for p in published),
    )
    print("decisions followed on the decisions topic:")
    for d in decisions:
        print(describe(d))

    with ApiClient(api_url, token) as api:
        # 3. Request-reply through the API: publish one intent, wait for its decision.
        #    A REPLY is never capped (it is counted).
        reply = SendIntent(
            f"qs-{run}-reply", tenant, sender, recipients[0], IntentClass.REPLY, thread_id=f"thread-{run}"
        )
        result = api.decide([reply], wait_ms=10_000)
        print("decision through the API:")
        for d in result.decisions:
            print(describe(d))
        for intent_id, poll in zip(result.pending, result.poll):
            print(f"  {intent_id}  pending: poll {poll}")

        # 4. What the mailbox has used, and what is left.
        usage = api.usage(f"mailbox:{sender}", tenant=tenant)
        print(f"usage of {usage.scope} (policy version {usage.policy_version}):")
        for w in usage.windows:
            print(
                f"  {w.scope} {w.intent_class}/{w.window}: {w.used} of {w.limit} used, "
                f"{w.remaining} left, resets at {at(w.resets_at_ms)}"
            )
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main())
