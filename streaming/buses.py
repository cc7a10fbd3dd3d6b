"""A bus from its URL: the one switch between the embedded default and Kafka (kept apart from
``bus``, the contract, so the contract does not import the Kafka implementation built on it)."""

from __future__ import annotations

from .bus import Bus, InProcessBus

KAFKA_SCHEMES = ("kafka://", "kafka+tls://", "kafka+iam://")


def open_bus(url: str) -> Bus:
    """``memory`` (in-process, the embedded default) or a Kafka URL: ``kafka://host:port[,…]``
    (plaintext), ``kafka+tls://…`` or ``kafka+iam://…`` (MSK IAM); see ``kafka_connection``."""
    if url in ("memory", "memory://"):
        return InProcessBus()
    if url.startswith(KAFKA_SCHEMES):
        from .kafka_bus import KafkaBus

        return KafkaBus(url)
    raise ValueError(f"unknown bus {url!r}: use memory, kafka://host:port, kafka+tls://host:port "
                     "or kafka+iam://host:port")
