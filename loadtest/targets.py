"""Where requests go: our HTTP endpoint (``POST /invocations``) or a SageMaker endpoint through
boto3's ``sagemaker-runtime`` client (AWS, or anything speaking its API such as ``clipwatch
serve``). A target sends one request and says how it ended; it never raises for a failed
request, because a failure is a measurement."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol


class TargetUnreachable(Exception):
    """Nothing answers where the target should be; the message says where and what happened."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    code: str                 # "ok" or an error code: the endpoint's, "http_503", "timeout", …
    http_status: int | None = None


class Target(Protocol):
    description: str

    def check(self, body: bytes) -> None: ...
    def invoke(self, body: bytes) -> Outcome: ...
    def close(self) -> None: ...


def payload(uri: str, stream_id: str, sequence: int) -> bytes:
    """The endpoint request for one segment. Each request gets its own (stream, sequence), so
    the endpoint does a real store write as in production, not the cheaper duplicate path."""
    key = "s3_uri" if uri.startswith("s3://") else "uri"
    return json.dumps({key: uri, "stream_id": stream_id, "sequence": sequence}).encode()


def _error_code(status: int, body: bytes) -> str:
    try:
        return json.loads(body)["error"]["code"]
    except Exception:
        return f"http_{status}"


class HttpTarget:
    """``POST {url}/invocations`` over one pooled httpx client shared by the sender threads."""

    def __init__(self, url: str, timeout_s: float, max_connections: int):
        import httpx

        self.url = url.rstrip("/")
        self.description = f"HTTP {self.url}/invocations"
        self._httpx = httpx
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections))

    def check(self, body: bytes) -> None:
        try:
            resp = self._client.get(f"{self.url}/ping")
        except self._httpx.HTTPError as exc:
            raise TargetUnreachable(f"nothing answers at {self.url}/ping ({type(exc).__name__}: {exc})") from None
        if resp.status_code != 200:
            raise TargetUnreachable(f"{self.url}/ping answered {resp.status_code}: the endpoint is not healthy")

    def invoke(self, body: bytes) -> Outcome:
        httpx = self._httpx
        try:
            resp = self._client.post(f"{self.url}/invocations", content=body,
                                     headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            return Outcome(False, "timeout")
        except httpx.TransportError:
            return Outcome(False, "connection_error")
        if resp.status_code == 200:
            return Outcome(True, "ok", 200)
        return Outcome(False, _error_code(resp.status_code, resp.content), resp.status_code)

    def close(self) -> None:
        self._client.close()


class SageMakerTarget:
    """``InvokeEndpoint`` through boto3, without retries (a retry would hide a failure and
    double-count its time). ``endpoint_url`` points it at a local server."""

    def __init__(self, endpoint_name: str, timeout_s: float, max_connections: int,
                 endpoint_url: str | None = None, region: str | None = None):
        import boto3
        from botocore.config import Config

        self.endpoint_name = endpoint_name
        where = endpoint_url or "AWS"
        self.description = f"SageMaker endpoint {endpoint_name!r} ({where})"
        self._client = boto3.client(
            "sagemaker-runtime", endpoint_url=endpoint_url, region_name=region,
            config=Config(read_timeout=timeout_s, connect_timeout=min(timeout_s, 5.0),
                          max_pool_connections=max_connections,
                          retries={"mode": "standard", "total_max_attempts": 1}))

    def check(self, body: bytes) -> None:
        outcome = self.invoke(body)
        if outcome.code in ("connection_error", "timeout"):
            raise TargetUnreachable(f"{self.description} did not answer ({outcome.code})")
        if outcome.code in ("ValidationError", "AccessDeniedException", "UnrecognizedClientException",
                            "InvalidSignatureException", "no_credentials"):
            raise TargetUnreachable(f"{self.description}: {outcome.code} (does the endpoint exist, "
                                    "and may these credentials invoke it?)")

    def invoke(self, body: bytes) -> Outcome:
        from botocore.exceptions import (ClientError, ConnectionError as BotoConnectionError,
                                         NoCredentialsError, ReadTimeoutError)

        try:
            resp = self._client.invoke_endpoint(EndpointName=self.endpoint_name, Body=body,
                                                ContentType="application/json", Accept="application/json")
            resp["Body"].read()
        except ReadTimeoutError:
            return Outcome(False, "timeout")
        except BotoConnectionError:
            return Outcome(False, "connection_error")
        except NoCredentialsError:
            return Outcome(False, "no_credentials")
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if err.get("Code") == "ModelError":  # the container's own status and code
                original = exc.response.get("OriginalStatusCode", status)
                message = exc.response.get("OriginalMessage", "")
                return Outcome(False, _error_code(original or 424, message.encode()), original)
            return Outcome(False, err.get("Code") or f"http_{status}", status)
        return Outcome(True, "ok", 200)

    def close(self) -> None:
        self._client.close()
