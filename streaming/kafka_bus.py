"""The bus over Kafka (kafka-python): keyed by stream id, consumer groups, manual commits.
Plaintext, TLS or MSK IAM by the URL's scheme (``kafka_connection``).

Timeouts are tuned for a group that should react in seconds, not the client's defaults (a new
group's first record took ~23 s with them, ~3 s with these): a worker that dies is noticed
after ``SESSION_TIMEOUT_MS`` and its partitions go to the others.
"""

from __future__ import annotations

import logging
import time

from .bus import Message
from .kafka_connection import KafkaConnection

log = logging.getLogger("clipwatch.kafka")

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
METADATA_MAX_AGE_MS = 2000
RECONNECT_BACKOFF_MAX_MS = 1000
# One model invocation is seconds; ten minutes without a poll means the worker is stuck.
MAX_POLL_INTERVAL_MS = 600_000


class KafkaBus:
    def __init__(self, url: str, client_id: str = "clipwatch"):
        from kafka import KafkaProducer

        self.connection, self.client_id = KafkaConnection.from_url(url), client_id
        self._producer = KafkaProducer(
            **self.connection.client_config(), client_id=client_id, acks="all", linger_ms=0,
            retries=2**31 - 1, reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            delivery_timeout_ms=120_000, request_timeout_ms=30_000)

    def ensure_topics(self, topics, partitions: int = 4) -> None:
        """Create what is missing; a segments topic needs more partitions than workers for
        all of them to get work (a stream stays on one partition)."""
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self.connection.client_config(), client_id=self.client_id)
        try:
            existing = set(admin.list_topics())
            missing = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
            if missing:
                try:
                    admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass  # another process created it first
        finally:
            admin.close()

    def publish(self, topic: str, key: str, value: bytes) -> None:
        self._producer.send(topic, key=key.encode(), value=value).get(timeout=130)

    def subscribe(self, topics: list[str], group: str) -> "KafkaSubscription":
        return KafkaSubscription(self.connection, list(topics), group, self.client_id)

    def close(self) -> None:
        self._producer.close(timeout=10)


class KafkaSubscription:
    def __init__(self, connection: KafkaConnection, topics: list[str], group: str, client_id: str):
        from kafka import KafkaConsumer

        self.group = group
        self.consumer = KafkaConsumer(
            **connection.client_config(), client_id=client_id, group_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1,
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            metadata_max_age_ms=METADATA_MAX_AGE_MS, max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS)
        self.consumer.subscribe(topics)
        self._lag, self._lag_at = 0, 0.0

    def poll(self, timeout_s: float) -> list[Message]:
        batches = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [Message(r.topic, (r.key or b"").decode(errors="replace"), r.value, r.partition, r.offset)
                for records in batches.values() for r in records]

    def commit(self, message: Message) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self.consumer.commit({TopicPartition(message.topic, message.partition):
                              OffsetAndMetadata(message.offset + 1, None, -1)})

    def retry(self, message: Message) -> None:
        from kafka.structs import TopicPartition

        tp = TopicPartition(message.topic, message.partition)
        if tp in self.consumer.assignment():
            self.consumer.seek(tp, message.offset)

    def lag(self) -> int:
        """End offsets need a broker round trip: refreshed at most every 5 s."""
        if time.monotonic() - self._lag_at > 5:
            self._lag_at = time.monotonic()
            assigned = list(self.consumer.assignment())
            try:
                ends = self.consumer.end_offsets(assigned) if assigned else {}
                self._lag = sum(max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned)
            except Exception as exc:  # broker away: keep the last figure
                log.debug("consumer lag unavailable: %s", exc)
        return self._lag

    def close(self) -> None:
        self.consumer.close()  # sends LeaveGroup: the partitions move at once, not after a timeout

