"""Read a playlist or segment by location: a local path (or file://), http(s) URL or s3:// URI.
Every failure becomes a ``FetchError`` with a reason an operator can act on (and a metric label)."""

from __future__ import annotations

import posixpath
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

DEFAULT_TIMEOUT_S = 10.0


class FetchError(Exception):
    """reason: not_found | timeout | http_<status> | unreachable | access_denied | not_hls |
    short_read | unsupported."""

    def __init__(self, location: str, reason: str, detail: str):
        super().__init__(f"{location}: {detail}")
        self.location, self.reason, self.detail = location, reason, detail


def join(base: str, ref: str) -> str:
    """Resolve a playlist entry against the playlist's own location."""
    if urlparse(ref).scheme in ("http", "https", "s3", "file") or ref.startswith("/"):
        return ref
    if base.startswith(("http://", "https://")):
        return urljoin(base, ref)
    if base.startswith("s3://"):
        bucket, _, key = base[5:].partition("/")
        return f"s3://{bucket}/{posixpath.normpath(posixpath.join(posixpath.dirname(key), ref))}"
    return str((Path(_local(base)).parent / ref).resolve())


def _local(location: str) -> str:
    return unquote(urlparse(location).path) if location.startswith("file://") else location


class Fetcher:
    """One long-lived HTTP client and S3 client, made on first use."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = timeout_s
        self._http = self._s3 = None
        self._lock = threading.Lock()

    def read(self, location: str, byterange: tuple[int, int] | None = None) -> bytes:
        """The object's bytes, or ``byterange`` = (length, offset) of them (EXT-X-BYTERANGE)."""
        if location.startswith(("http://", "https://")):
            data = self._read_http(location, byterange)
        elif location.startswith("s3://"):
            data = self._read_s3(location, byterange)
        else:
            data = self._read_file(_local(location), byterange)
        if byterange and len(data) != byterange[0]:
            raise FetchError(location, "short_read", f"asked for {byterange[0]} bytes at {byterange[1]}, "
                                                     f"got {len(data)} (the file is shorter)")
        return data

    def _read_file(self, path: str, byterange: tuple[int, int] | None = None) -> bytes:
        try:
            if byterange:
                with open(path, "rb") as f:
                    f.seek(byterange[1])
                    return f.read(byterange[0])
            return Path(path).read_bytes()
        except FileNotFoundError:
            raise FetchError(path, "not_found", "no such file") from None
        except IsADirectoryError:
            raise FetchError(path, "not_found", "is a directory, not a file") from None
        except PermissionError:
            raise FetchError(path, "access_denied", "permission denied") from None

    def _read_http(self, url: str, byterange: tuple[int, int] | None = None) -> bytes:
        import httpx

        with self._lock:
            if self._http is None:
                self._http = httpx.Client(timeout=self.timeout_s, follow_redirects=True)
        try:
            headers = {"Range": f"bytes={byterange[1]}-{sum(byterange) - 1}"} if byterange else None
            response = self._http.get(url, headers=headers)
        except httpx.TimeoutException:
            raise FetchError(url, "timeout", f"no answer within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise FetchError(url, "unreachable", f"cannot connect ({exc.__class__.__name__})") from None
        if response.status_code == 404:
            raise FetchError(url, "not_found", "HTTP 404")
        if response.status_code >= 400:
            raise FetchError(url, f"http_{response.status_code}", f"HTTP {response.status_code}")
        if byterange and response.status_code == 200:  # a server that ignores Range: slice it
            return response.content[byterange[1]:sum(byterange)]
        return response.content

    def _read_s3(self, uri: str, byterange: tuple[int, int] | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        from clipwatch.blobs import parse_s3_uri

        bucket, key = parse_s3_uri(uri)
        with self._lock:
            if self._s3 is None:
                import boto3
                from botocore.config import Config

                self._s3 = boto3.client("s3", config=Config(
                    connect_timeout=self.timeout_s, read_timeout=self.timeout_s,
                    retries={"mode": "standard", "max_attempts": 2}))
        try:
            extra = {"Range": f"bytes={byterange[1]}-{sum(byterange) - 1}"} if byterange else {}
            return self._s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
                raise FetchError(uri, "not_found", "no such object") from None
            if code in ("AccessDenied", "403"):
                raise FetchError(uri, "access_denied", "access denied") from None
            raise FetchError(uri, "unreachable", f"S3 error {code}") from None
        except BotoCoreError as exc:
            raise FetchError(uri, "unreachable", str(exc)) from None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
