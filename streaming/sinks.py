"""Where the follower keeps each segment it emits, so workers can read it after the encoder's
sliding window has deleted it (and reviewers can watch it later): a local folder, or S3 (the
encoder → S3 step, for encoders that write to disk)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _name(stream_id: str, sequence: int, listed_uri: str) -> str:
    base = listed_uri.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "segment.ts"
    return f"{_UNSAFE.sub('_', stream_id).strip('_') or 'stream'}/{sequence:08d}-{base}"


class SegmentSink(Protocol):
    def put(self, stream_id: str, sequence: int, listed_uri: str, data: bytes) -> str:
        """Keep the bytes; return the URI the endpoint reads them from."""


class DirSink:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def put(self, stream_id: str, sequence: int, listed_uri: str, data: bytes) -> str:
        path = self.root / _name(stream_id, sequence, listed_uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a reader never sees half a segment
        return str(path)


class S3Sink:
    def __init__(self, target: str, s3_client=None):
        from clipwatch.blobs import parse_s3_uri

        bucket, prefix = parse_s3_uri(target.rstrip("/") + "/x")
        self.bucket, self.prefix = bucket, prefix[:-1]
        self._s3 = s3_client

    def put(self, stream_id: str, sequence: int, listed_uri: str, data: bytes) -> str:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        key = self.prefix + _name(stream_id, sequence, listed_uri)
        self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="video/mp2t")
        return f"s3://{self.bucket}/{key}"


def open_sink(target: str) -> SegmentSink:
    return S3Sink(target) if target.startswith("s3://") else DirSink(target)
