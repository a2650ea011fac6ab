"""Messages to MQTT for the line's PLC, never blocking a request: a reject on every defect verdict (topic
`<prefix>/<line>`), and an audit divert for every pass drawn into QA's audit (topic `<prefix>/<line>/audit`, so a
PLC that rejects on the line's topic never rejects a good part for being audited). Both say `audit`: a selected
part goes to the QA station."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger("serving.rejects")
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A long outage at line speed must not grow memory without bound; past this, rejects are dropped and counted.
MAX_QUEUED_MESSAGES = 10_000
KEEPALIVE_S = 30
AUDIT_TOPIC_SUFFIX = "/audit"


def reject_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The message body for one stored inspection row (the dict the inspect route stores)."""
    received = row.get("received_at")
    return {
        "inspection_id": row["id"],
        "product": row["product"],
        "line_id": row.get("line_id"),
        "camera_id": row.get("camera_id"),
        "frame_id": row.get("frame_id"),
        "defect_type": row.get("defect_type"),
        "defect_probability": row.get("defect_probability"),
        "model_version": row.get("model_version"),
        "at": received.isoformat() if isinstance(received, datetime) else received,
        "verdict": row.get("verdict"),
        "audit": bool(row.get("audit_selected")),
    }


def reject_topic(prefix: str, line_id: str | None) -> str:
    """`<prefix>/<line_id>`, 'unknown' without a line; MQTT wildcards and separators in an id become '_'."""
    line = line_id or "unknown"
    for reserved in "/+#":  # a line id must name exactly one topic level, never a wildcard
        line = line.replace(reserved, "_")
    return f"{prefix.rstrip('/')}/{line}"


class RejectPublisher:
    """A paho client with its own network thread; connects in the background and reconnects by itself."""

    def __init__(self, url: str, topic_prefix: str, registry: CollectorRegistry) -> None:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"mqtt_url {url!r} must look like mqtt://host[:port] or mqtts://host[:port]")
        self._host, self._port = parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme]
        self._prefix, self._connected = topic_prefix, False
        # Each kind of trouble is logged once per outage: at line speed a warning per frame would drown the log.
        self._warned: set[str] = set()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"inspection-{uuid.uuid4().hex[:12]}")
        if parts.username:
            self._client.username_pw_set(parts.username, parts.password)
        if parts.scheme == "mqtts":
            self._client.tls_set()
        self._client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self.published = Counter(
            "inspection_reject_publish",
            "Reject messages handed to the MQTT client: sent, queued_offline (sent on reconnect) or dropped.",
            ["result"],
            registry=registry,
        )
        self.acknowledged = Counter(
            "inspection_reject_acknowledged", "Reject messages the broker acknowledged (QoS 1).", registry=registry
        )
        self.connected = Gauge(
            "inspection_reject_broker_connected", "1 while connected to the MQTT broker.", registry=registry
        )

    def start(self) -> None:
        """Start the network thread; the connection is made there, so an absent broker never delays startup."""
        self._client.connect_async(self._host, self._port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def stop(self) -> None:
        """Disconnect (queued packets go out first) and join the network thread; blocking: call off the loop."""
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, row: Mapping[str, Any]) -> None:
        """Queue one reject (or, for an audited pass, divert) message (QoS 1) for the row's line; never raises, an
        outage is logged and counted."""
        try:
            topic = reject_topic(self._prefix, row.get("line_id"))
            if row.get("verdict") != "defect":
                topic += AUDIT_TOPIC_SUFFIX  # a pass drawn for audit: divert, never reject
            info = self._client.publish(topic, json.dumps(reject_payload(row)), qos=1)
            result = {
                mqtt.MQTT_ERR_SUCCESS: "sent",
                mqtt.MQTT_ERR_NO_CONN: "queued_offline",  # kept by paho and resent once connected
            }.get(info.rc, "dropped")
        except Exception:
            log.exception("reject message for inspection %s could not be queued", row.get("id"))
            result = "dropped"
        self.published.labels(result).inc()
        if result != "sent" and result not in self._warned:
            self._warned.add(result)
            log.warning("MQTT broker %s:%s unavailable: reject messages are %s", self._host, self._port, result)

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", self._host, self._port, reason)
            return
        self._connected = True
        self._warned.clear()
        self.connected.set(1)
        log.info("connected to MQTT broker %s:%s", self._host, self._port)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if self._connected:
            log.warning("lost MQTT broker %s:%s (%s); reconnecting", self._host, self._port, reason)
        self._connected = False
        self.connected.set(0)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        if "unreachable" not in self._warned:
            self._warned.add("unreachable")
            log.warning("cannot reach MQTT broker %s:%s; retrying in the background", self._host, self._port)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, _mid: int, _reason: Any, _props: Any) -> None:
        self.acknowledged.inc()
