"""How to reach a Kafka cluster, from the bus URL alone: plaintext, TLS, or Amazon MSK's IAM
authentication.

One string (``--bus``) is what every command and the CloudFormation outputs pass around, so the
security settings ride in its scheme instead of in a dozen flags:

- ``kafka://host:port[,host:port…]``: plaintext (a local broker, ``clipwatch broker``);
- ``kafka+tls://host:port[?cafile=/path/ca.pem]``: TLS, the server's certificate checked against
  the system's CAs (or ``cafile``); MSK's TLS listener is port 9094;
- ``kafka+iam://host:port[?region=us-east-1]``: TLS + SASL OAUTHBEARER with an AWS IAM token
  (MSK IAM access control, port 9098; what the stack's ``EnableKafka`` creates). The token is a
  SigV4-presigned ``kafka-cluster:Connect`` request made by AWS's own signer
  (``aws-msk-iam-sasl-signer-python``) from boto3's default credentials, so the workers' IAM
  role is what the broker authorises. The region comes from ``region=``, else from the MSK
  broker host name (``b-1.<cluster>.<id>.kafka.<region>.amazonaws.com``), else from boto3.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from kafka.net.sasl.oauth import AbstractTokenProvider

SCHEMES = {"kafka": "PLAINTEXT", "kafka+tls": "SSL", "kafka+iam": "SASL_SSL"}
_MSK_HOST = re.compile(r"\.kafka(?:-serverless)?\.([a-z]{2}(?:-gov)?-[a-z]+-\d)\.amazonaws\.com$")
# Refresh a token this long before it expires (MSK's last 15 minutes).
REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True)
class KafkaConnection:
    servers: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    cafile: Optional[str] = None
    region: Optional[str] = None  # kafka+iam only

    @classmethod
    def from_url(cls, url: str) -> "KafkaConnection":
        scheme, sep, _ = url.partition("://")
        if not sep:  # a bare host:port list, as kafka tools take it
            scheme, url = "kafka", f"kafka://{url}"
        if scheme not in SCHEMES:
            raise ValueError(f"unknown Kafka URL scheme {scheme!r} in {url!r}: use "
                             f"{', '.join(s + '://host:port' for s in SCHEMES)}")
        parts = urlsplit(url)
        servers = tuple(s for s in parts.netloc.split(",") if s)
        if not servers:
            raise ValueError(f"no broker address in {url!r}: use {scheme}://host:port")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"broker address {server!r} in {url!r} is not host:port")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"cafile", "region"}
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} in {url!r} (known: cafile, region)")
        if scheme == "kafka" and query:
            raise ValueError(f"{url!r}: plaintext kafka:// takes no options; TLS is kafka+tls://")
        region = None
        if scheme == "kafka+iam":
            region = query.get("region") or _region_of(servers[0])
        return cls(servers, SCHEMES[scheme], query.get("cafile"), region)

    def client_config(self) -> dict:
        """kafka-python keyword arguments shared by producers, consumers and admin clients."""
        config: dict = {"bootstrap_servers": list(self.servers), "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_check_hostname"] = True
            if self.cafile:
                config["ssl_cafile"] = self.cafile
        if self.security_protocol == "SASL_SSL":
            config["sasl_mechanism"] = "OAUTHBEARER"
            config["sasl_oauth_token_provider"] = self.token_provider
        return config

    @cached_property
    def token_provider(self) -> "MskIamTokenProvider":
        """One provider per connection, shared by its clients (tokens are reused until close to
        expiry, as kafka-python asks of providers)."""
        return MskIamTokenProvider(self.region)


def _region_of(host_port: str) -> Optional[str]:
    match = _MSK_HOST.search(host_port.rpartition(":")[0])
    if match:
        return match.group(1)
    import boto3

    return boto3.session.Session().region_name


class MskIamTokenProvider(AbstractTokenProvider):
    """SASL OAUTHBEARER tokens for MSK IAM: AWS's signer, from boto3's default credential chain
    (instance or task role, environment, profile), cached until shortly before expiry."""

    def __init__(self, region: Optional[str]):
        super().__init__()
        if not region:
            raise ValueError("kafka+iam:// needs the cluster's region: add ?region=… to the bus URL, "
                             "or set AWS_REGION")
        self.region = region
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expires_at = 0.0

    def token(self) -> str:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

        with self._lock:
            if self._token is None or time.time() > self._expires_at - REFRESH_MARGIN_S:
                self._token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(self.region)
                self._expires_at = expiry_ms / 1000.0
            return self._token
