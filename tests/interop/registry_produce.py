"""Publishes send intents the way an ordinary Python app would: with the
standard Confluent client and its AvroSerializer, which registers the schema
in a schema registry and writes the registry's wire format (a zero byte, the
4-byte schema id, the Avro datum).

    python registry_produce.py BOOTSTRAP TOPIC REGISTRY_URL SCHEMA_FILE < intents.jsonl

Each input line is one intent as JSON (the fields of schemas/send_intent.avsc,
`class` as its symbol). The key is the sender, as sendgate asks. Prints the
schema id the serializer used, then the number of records acknowledged.
"""

import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    bootstrap, topic, registry_url, schema_file = sys.argv[1:5]
    with open(schema_file, encoding="utf-8") as f:
        schema_str = f.read()
    registry = SchemaRegistryClient({"url": registry_url})
    serializer = AvroSerializer(registry, schema_str)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(str(err))

    count = 0
    schema_id = None
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        intent = json.loads(line)
        value = serializer(intent, SerializationContext(topic, MessageField.VALUE))
        schema_id = int.from_bytes(value[1:5], "big")
        producer.produce(topic, key=intent["sender"].encode(), value=value, on_delivery=delivered)
        count += 1
    remaining = producer.flush(30)
    if remaining or failures:
        print(f"not delivered: {remaining} pending, failures {failures}", file=sys.stderr)
        return 1
    print(schema_id)
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
