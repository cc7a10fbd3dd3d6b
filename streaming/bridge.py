"""S3 events → the Kafka segments topic: the cloud path's trigger for workers instead of a
Lambda. The bucket notifies an SQS queue (``ObjectCreated`` for the segment keys); the bridge
long-polls it, publishes one SegmentEvent per segment (key = stream = the segment's folder,
sequence = its name's number, as the endpoint derives them), and deletes each message only once
its events are on the bus. A message that is not an S3 notification goes to the dead-letter
topic with its body, so nothing vanishes silently."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime

from clipwatch import metrics
from clipwatch.records import SegmentRef

from .bus import Bus
from .events import DeadLetter, SegmentEvent, Topics

log = logging.getLogger("clipwatch.bridge")


def events_from_notification(body: str) -> list[SegmentEvent]:
    """Segment events in one SQS message body; ValueError when it is not an S3 notification."""
    from inference.lambda_handler import is_segment, segment_objects

    try:
        notification = json.loads(body)
    except ValueError:
        raise ValueError("message body is not JSON") from None
    if not isinstance(notification, dict) or not ("Records" in notification or
                                                  notification.get("Event") == "s3:TestEvent" or
                                                  notification.get("source") == "aws.s3"):
        raise ValueError("not an S3 event notification")
    times = [r.get("eventTime") for r in notification.get("Records", [])] or [
        notification.get("time")]
    events = []
    for (bucket, key), when in zip(segment_objects(notification), times):
        if not is_segment(key):
            continue
        ref = SegmentRef.from_uri(f"s3://{bucket}/{key}")
        ready = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() if when else None
        events.append(SegmentEvent(stream_id=ref.stream_id, sequence=ref.sequence, uri=ref.uri,
                                   source_uri=ref.uri, ready_at=ready or datetime.now().timestamp()))
    return events


class S3EventBridge:
    def __init__(self, queue_url: str, bus: Bus, topics: Topics = Topics.with_prefix(), sqs=None):
        import boto3

        self.queue_url, self.bus, self.topics = queue_url, bus, topics
        self.sqs = sqs or boto3.client("sqs")
        self.published = 0

    def pump(self, wait_s: int = 10) -> int:
        """One receive: publish its segments, delete what is done; how many were published."""
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=wait_s).get("Messages", [])
        published, done = 0, []
        for m in messages:
            try:
                events = events_from_notification(m["Body"])
            except ValueError as exc:
                log.warning("dead-lettering SQS message %s: %s", m["MessageId"], exc)
                self.bus.publish(self.topics.dead_letter, m["MessageId"], DeadLetter(
                    error_code="invalid_event", message=str(exc), attempts=1, worker="bridge",
                    raw=m["Body"][:4096]).model_dump_json().encode())
                metrics.STREAM_SEGMENTS.labels("invalid_event").inc()
                done.append(m)
                continue
            for event in events:  # a failure here leaves the message for SQS to redeliver
                self.bus.publish(self.topics.segments, event.stream_id, event.model_dump_json().encode())
                metrics.STREAM_SEGMENTS.labels("emitted").inc()
                published += 1
            done.append(m)
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        self.published += published
        return published

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.pump()
            except Exception as exc:  # SQS or the bus away: both clients reconnect
                metrics.BUS_ERRORS.labels("bridge").inc()
                log.warning("bridge: %s: %s; retrying", exc.__class__.__name__, exc)
                stop.wait(2.0)
