"""Writes the fuzz targets' seed inputs (fuzz/seeds/TARGET/*): one valid
input of each kind, encoded with the Python client's Avro encoder (an
independent encoder of the same schemas), so that fuzzing starts from
well-formed records rather than guessing their layout.

    python fuzz/seeds.py     (with the sendgate_client package installed)
"""

import json
from pathlib import Path

from sendgate_client.avro import encode_datum

HERE = Path(__file__).parent / "seeds"

INTENT = {"intent_id": "i-1", "tenant": "acme", "sender": "Ana@Acme.com", "recipient": "bo@corp.example", "class": "OUTBOUND",
          "template_id": "t1", "content_hash": "h1", "thread_id": None, "requires_approval": False, "requested_at_ms": 0}
EVENT = {"event_id": "e-1", "intent_id": "i-1", "tenant": "acme", "sender": "ana@acme.com", "recipient": "bo@corp.example", "kind": "DEFERRED",
         "smtp_code": 421, "enhanced_code": "4.7.28", "response": "try later", "occurred_at_ms": 5, "retry_after_seconds": 60}
COMMAND = {"command_id": "c-1", "kind": "APPROVE", "tenant": "acme", "target": "i-1", "sender": "ana@acme.com", "reason": "ok",
           "operator": "ops", "list": None, "mode": None, "until_ms": None}
POLICY = {"scope": "tenant:acme", "source_name": "seed",
          "spec_json": json.dumps({"business_hours": "off", "limits": {"mailbox.outbound.hour": 5},
                                   "trust": {"mailbox": "standard"}, "reconcile": {"wait_seconds": 60}})}

# (target, type selector byte, record type, datum): the ingress target adds
# the header itself when its selector asks, so its seeds are the bodies.
AVRO = [("SendIntent", INTENT, 0), ("DeliveryEvent", EVENT, 1), ("PolicyDocument", POLICY, 2), ("Command", COMMAND, 3)]


def write(target: str, name: str, data: bytes) -> None:
    d = HERE / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


for name, datum, topic in AVRO:
    body = encode_datum(name, datum)[10:]
    key = b"tenant:acme" if name == "PolicyDocument" else b""
    write("ingress", name, bytes([topic, len(key)]) + key + body)
    # registry: the same body as a datum of the current writer schema.
    write("registry", name, bytes([{0: 0, 1: 1, 3: 2, 2: 3}[topic]]) + body)
for i, (kind, line) in enumerate([(0, {k: v for k, v in INTENT.items() if k != "requested_at_ms"}), (1, EVENT), (2, {"command_id": "c-2", "kind": "PAUSE", "tenant": "acme", "target": "mailbox:ana@acme.com"})]):
    write("json_lines", f"line-{i}", bytes([kind]) + json.dumps(line).encode())
write("policy", "example.toml", (Path(__file__).parent.parent / "examples" / "policy.toml").read_bytes())
write("policy", "document.json", POLICY["spec_json"].encode())
for i, a in enumerate(["Ana@Acme.com", "bo@xn--mnchen-3ya.de", "\"quoted local\"@Example.ORG", "user@bücher.example"]):
    write("address", f"address-{i}", a.encode())
