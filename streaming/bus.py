"""The bus contract, and its in-process implementation (the embedded default).

Workers and followers see only ``Bus.publish`` and a ``Subscription``'s poll / commit / retry,
so the same worker code runs in one process on a laptop and across machines over Kafka
(``kafka_bus.KafkaBus``); ``buses.open_bus`` picks one from a URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Message:
    topic: str
    key: str
    value: bytes
    partition: int = 0
    offset: int = 0


class Subscription(Protocol):
    def poll(self, timeout_s: float) -> list[Message]:
        """The next messages for this group member (empty after ``timeout_s``)."""

    def commit(self, message: Message) -> None:
        """Mark ``message`` and everything before it on its partition done for the group."""

    def retry(self, message: Message) -> None:
        """Deliver ``message`` again (after a failure that was not its fault)."""

    def lag(self) -> int:
        """Messages waiting for the group on this member's partitions."""

    def close(self) -> None:
        """Leave the group."""


class Bus(Protocol):
    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Append, returning once the bus has it (raises when it cannot)."""

    def subscribe(self, topics: list[str], group: str) -> Subscription: ...

    def close(self) -> None: ...


class InProcessBus:
    """Topics as in-memory logs with one partition each, and per-group cursors. Members of a
    group share a cursor, so each message goes to one of them; ``retry`` rewinds it."""

    def __init__(self):
        self._logs: dict[str, list[Message]] = {}
        self._cursors: dict[tuple[str, str], int] = {}  # (group, topic) → next offset to hand out
        self._committed: dict[tuple[str, str], int] = {}
        self._changed = threading.Condition()

    def publish(self, topic: str, key: str, value: bytes) -> None:
        with self._changed:
            log = self._logs.setdefault(topic, [])
            log.append(Message(topic, key, value, 0, len(log)))
            self._changed.notify_all()

    def messages(self, topic: str) -> list[Message]:
        with self._changed:
            return list(self._logs.get(topic, []))

    def subscribe(self, topics: list[str], group: str) -> "_InProcessSubscription":
        return _InProcessSubscription(self, list(topics), group)

    def committed(self, group: str, topic: str) -> int:
        with self._changed:
            return self._committed.get((group, topic), 0)

    def close(self) -> None:
        with self._changed:
            self._changed.notify_all()


class _InProcessSubscription:
    def __init__(self, bus: InProcessBus, topics: list[str], group: str):
        self.bus, self.topics, self.group = bus, topics, group
        self.closed = False

    def _take(self) -> Message | None:
        for topic in self.topics:
            log = self.bus._logs.get(topic, [])
            cursor = self.bus._cursors.get((self.group, topic), 0)
            if cursor < len(log):
                self.bus._cursors[(self.group, topic)] = cursor + 1
                return log[cursor]
        return None

    def poll(self, timeout_s: float) -> list[Message]:
        with self.bus._changed:
            message = self._take()
            if message is None and not self.closed:
                self.bus._changed.wait(timeout_s)
                message = self._take()
        return [message] if message else []

    def commit(self, message: Message) -> None:
        with self.bus._changed:
            key = (self.group, message.topic)
            self.bus._committed[key] = max(self.bus._committed.get(key, 0), message.offset + 1)

    def retry(self, message: Message) -> None:
        with self.bus._changed:
            key = (self.group, message.topic)
            self.bus._cursors[key] = min(self.bus._cursors.get(key, 0), message.offset)

    def lag(self) -> int:
        with self.bus._changed:
            return sum(len(self.bus._logs.get(t, [])) - self.bus._cursors.get((self.group, t), 0)
                       for t in self.topics)

    def close(self) -> None:
        self.closed = True
