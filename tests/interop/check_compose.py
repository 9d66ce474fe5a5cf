"""Checks docker-compose.yml without Docker (tests/observability.rs).

    check_compose.py REPO_ROOT TOPICS_JSON

TOPICS_JSON: the topology's topic names (what `sendgate topics apply`
creates). Checks what a user relies on: the host reaches the API, the
operator page, metrics, Prometheus and Grafana on the loopback; every
sendgate instance joins the same broker and namespace, has its own
instance id and state, and a health check; topics are created before
sendgate starts and never auto-created by the broker; Prometheus scrapes
every instance; Grafana gets its data source and the dashboard. Prints
"ok" or raises.
"""

import json
import os
import sys

import yaml

root, topics = sys.argv[1], json.loads(sys.argv[2])
with open(os.path.join(root, "docker-compose.yml")) as f:
    compose = yaml.safe_load(f)
services = compose["services"]


def env(service: str) -> dict:
    e = services[service].get("environment", {})
    return e if isinstance(e, dict) else dict(x.split("=", 1) for x in e)


def published(service: str) -> set:
    return {p for p in services[service].get("ports", [])}


# The broker: topics only from `sendgate topics apply`.
assert env("kafka")["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
assert services["sendgate-topics"]["command"] == ["topics", "apply"]

# Every sendgate instance: the same broker and namespace as the topics job.
instances = ["sendgate", "sendgate-replica"]
for s in instances + ["sendgate-topics"]:
    e = env(s)
    assert e["SENDGATE_BOOTSTRAP"] == "kafka:9092", (s, e)
    assert e.get("SENDGATE_NAMESPACE", "sendgate") == env("sendgate-topics").get("SENDGATE_NAMESPACE", "sendgate"), s
for s in instances:
    e, svc = env(s), services[s]
    assert svc["command"] == ["run"], s
    assert e["SENDGATE_INSTANCE_ID"] == "@hostname", f"{s}: replicas need their own instance id"
    assert e["SENDGATE_API_ADDR"] == "0.0.0.0:9465" and e["SENDGATE_METRICS_ADDR"] == "0.0.0.0:9464", s
    assert "SENDGATE_API_TOKENS" in e, s
    assert svc["healthcheck"]["test"] == ["CMD", "/usr/local/bin/sendgate", "ready"], s
    deps = svc["depends_on"]
    assert deps["kafka"]["condition"] == "service_healthy" and deps["sendgate-topics"]["condition"] == "service_completed_successfully", s
    assert int(str(svc.get("stop_grace_period", "30s")).rstrip("s")) >= 10, s

# The first instance: API, page and metrics on the host's loopback, its state
# in a named volume. Replicas: no host ports (they would collide), no shared
# state volume, started with the scale profile.
assert {"127.0.0.1:9464:9464", "127.0.0.1:9465:9465"} <= published("sendgate")
assert any(v.startswith("sendgate-state:") for v in services["sendgate"]["volumes"])
replica = services["sendgate-replica"]
assert not replica.get("ports"), "a replica publishes no host port"
assert not any(":" in v for v in replica.get("volumes", []) if isinstance(v, str)), "a replica shares no named state volume"
assert replica.get("profiles") == ["scale"]

# Prometheus scrapes every instance; Grafana provisions it and the dashboard.
assert "127.0.0.1:9090:9090" in published("prometheus")
assert "127.0.0.1:3000:3000" in published("grafana")
with open(os.path.join(root, "deploy/prometheus/prometheus.yml")) as f:
    prom = yaml.safe_load(f)
jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
names = {n for sd in jobs["sendgate"]["dns_sd_configs"] for n in sd["names"]}
assert set(instances) <= names and all(sd["port"] == 9464 for sd in jobs["sendgate"]["dns_sd_configs"]), names
mounts = [v for v in services["grafana"]["volumes"] if isinstance(v, str)]
for needed in ["deploy/grafana/provisioning", "deploy/grafana/dashboards"]:
    assert any(needed in v for v in mounts), (needed, mounts)
with open(os.path.join(root, "deploy/grafana/provisioning/datasources/prometheus.yml")) as f:
    ds = yaml.safe_load(f)["datasources"][0]
assert ds["uid"] == "prometheus" and ds["url"] == "http://prometheus:9090", ds
dashboard = json.load(open(os.path.join(root, "deploy/grafana/dashboards/sendgate.json")))
assert dashboard["uid"] == "sendgate"

# The topology the topics job creates is the one sendgate runs on, and a
# single broker can hold it: replication 1 for the topics and for the
# transaction and offsets logs exactly-once needs.
assert "intents" in topics and "decisions" in topics and "instances" in topics, topics
brokers = 1
assert int(env("sendgate-topics").get("SENDGATE_REPLICATION_FACTOR", "1")) <= brokers
for k in ["KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]:
    assert int(env("kafka")[k]) <= brokers, k
print("ok")
