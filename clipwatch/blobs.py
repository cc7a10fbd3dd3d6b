"""Read a segment's bytes from S3 or a local file, into memory (no temp files).

The S3 client is created once and reused: a new client per request costs tens of ms of
credential and endpoint resolution. Any S3-compatible endpoint works through boto3's own
``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``) variable.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import InvalidUri, NotAllowed, SegmentNotFound, SegmentTooLarge

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if parsed.scheme != "s3" or not _BUCKET.match(bucket) or not key:
        raise InvalidUri(f"not a valid S3 URI (s3://bucket/key): {uri!r}")
    return bucket, key


class SegmentReader:
    def __init__(self, allowed_buckets=(), allowed_dirs=(), max_bytes: int = 64 << 20,
                 s3_client=None):
        self.allowed_buckets = frozenset(allowed_buckets)
        self.allowed_dirs = tuple(Path(d).resolve() for d in allowed_dirs)
        self.max_bytes = max_bytes
        self._s3 = s3_client
        self._lock = threading.Lock()

    @property
    def s3(self):
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                self._s3 = boto3.client("s3", config=Config(
                    max_pool_connections=32, retries={"mode": "standard", "max_attempts": 3}))
            return self._s3

    def read(self, uri: str) -> bytes:
        if uri.startswith("s3://"):
            return self._read_s3(uri)
        if uri.startswith("file://"):
            return self._read_file(unquote(urlparse(uri).path))
        if uri.startswith("/"):
            return self._read_file(uri)
        raise InvalidUri(f"unsupported segment URI {uri!r}: use s3://bucket/key or an absolute path")

    def _read_s3(self, uri: str) -> bytes:
        from botocore.exceptions import ClientError

        bucket, key = parse_s3_uri(uri)
        if self.allowed_buckets and bucket not in self.allowed_buckets:
            raise NotAllowed(f"bucket {bucket!r} is not in the allow-list")
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
                raise SegmentNotFound(f"no such segment: {uri}") from None
            if code in ("AccessDenied", "403"):
                raise NotAllowed(f"access denied to {uri}") from None
            raise
        body = obj["Body"]
        if obj.get("ContentLength", 0) > self.max_bytes:
            body.close()
            raise SegmentTooLarge(f"{uri} is {obj['ContentLength']} bytes, the limit is {self.max_bytes}")
        return body.read()

    def _read_file(self, path: str) -> bytes:
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(d) for d in self.allowed_dirs):
            raise NotAllowed(f"local path {path!r} is outside the allowed folders "
                             "(set CLIPWATCH_ALLOWED_DIRS or --allow-dir)")
        if not resolved.is_file():
            raise SegmentNotFound(f"no such segment file: {path}")
        size = resolved.stat().st_size
        if size > self.max_bytes:
            raise SegmentTooLarge(f"{path} is {size} bytes, the limit is {self.max_bytes}")
        return resolved.read_bytes()
