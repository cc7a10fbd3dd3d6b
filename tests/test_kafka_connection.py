"""Reaching Kafka securely from the bus URL: kafka+tls:// through a real TLS handshake to a real
broker (tansu behind a TLS terminator on loopback: tansu 0.6.0's own --cert/--key flags refuse
to be used together), and kafka+iam:// tokens checked against SigV4 itself. MSK's IAM SASL
exchange needs MSK: no broker here speaks it, so the token and the client settings that carry
it are what is tested."""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest

from streaming.buses import open_bus
from streaming.events import Topics
from streaming.kafka_connection import KafkaConnection, MskIamTokenProvider


# --- URLs ---------------------------------------------------------------------------------------

def test_the_scheme_selects_plaintext_tls_or_msk_iam():
    plain = KafkaConnection.from_url("kafka://a:9092,b:9092")
    assert plain.servers == ("a:9092", "b:9092") and plain.client_config()["security_protocol"] == "PLAINTEXT"
    assert KafkaConnection.from_url("a:9092").servers == ("a:9092",)  # a bare list, as Kafka tools take it
    tls = KafkaConnection.from_url("kafka+tls://b-1.example:9094?cafile=/etc/ca.pem").client_config()
    assert tls["security_protocol"] == "SSL" and tls["ssl_cafile"] == "/etc/ca.pem" and tls["ssl_check_hostname"]
    msk = "kafka+iam://boot-abc.c2.kafka-serverless.eu-west-1.amazonaws.com:9098"
    iam = KafkaConnection.from_url(msk)
    assert iam.region == "eu-west-1"  # from MSK's host name
    assert KafkaConnection.from_url("kafka+iam://10.0.0.5:9098?region=us-east-2").region == "us-east-2"


@pytest.mark.parametrize("url, message", [
    ("kafka+sasl://a:9092", "unknown Kafka URL scheme"),
    ("kafka://", "no broker address"),
    ("kafka://a", "is not host:port"),
    ("kafka://a:port", "is not host:port"),
    ("kafka+tls://a:9094?ca=x", "unknown option(s) ca"),
    ("kafka://a:9092?cafile=x", "plaintext kafka:// takes no options"),
])
def test_bad_bus_urls_are_refused_with_the_reason(url, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        KafkaConnection.from_url(url)


def test_a_command_given_a_bad_bus_url_says_so(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "clipwatch.cli", "bridge", "--queue", "http://q",
                           "--bus", "kafka+tls://broker:9094?ca=x"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "clipwatch bridge: unknown option(s) ca" in proc.stderr


# --- TLS, for real ------------------------------------------------------------------------------

def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class TlsTerminator:
    """TLS on ``port`` in front of a plaintext broker: what a TLS listener is to a client."""

    def __init__(self, port: int, backend: tuple[str, int], cert: Path, key: Path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.backend = backend
        self.listener = socket.create_server(("127.0.0.1", port))
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not trust the certificate: refused here
            return
        self.handshakes += 1
        upstream = socket.create_connection(self.backend)

        def pump(src, dst) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def tls_broker(tmp_path):
    from clipwatch.localstack import free_port
    from streaming.tansu import Tansu

    cert, key = _self_signed(tmp_path, "broker")
    tls_port = free_port()
    broker = Tansu(free_port(), log_file=tmp_path / "tansu.log", advertised=f"localhost:{tls_port}").start()
    terminator = TlsTerminator(tls_port, (broker.host, broker.port), cert, key)
    yield {"url": f"kafka+tls://localhost:{tls_port}?cafile={cert}", "port": tls_port,
           "terminator": terminator}
    terminator.close()
    broker.stop()


def test_the_bus_over_tls_publishes_and_consumes_through_a_verified_handshake(tls_broker):
    topics = Topics.with_prefix("tls")
    bus = open_bus(tls_broker["url"])
    try:
        bus.ensure_topics(topics.all(), partitions=1)
        bus.publish(topics.segments, "cam1", json.dumps({"n": 1}).encode())
        sub = bus.subscribe([topics.segments], "tls-group")
        got, deadline = [], time.monotonic() + 60
        while not got:
            assert time.monotonic() < deadline, "nothing consumed over TLS within 60 s"
            got = sub.poll(0.5)
        assert json.loads(got[0].value) == {"n": 1} and got[0].key == "cam1"
        sub.commit(got[0])
        sub.close()
    finally:
        bus.close()
    assert tls_broker["terminator"].handshakes >= 2  # producer, admin and consumer all came by TLS


def test_a_broker_certificate_the_client_does_not_trust_is_refused(tls_broker, tmp_path):
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    other_ca, _ = _self_signed(tmp_path, "someone-else")
    config = KafkaConnection.from_url(f"kafka+tls://localhost:{tls_broker['port']}?cafile={other_ca}").client_config()
    with pytest.raises(KafkaError):
        KafkaAdminClient(**config, request_timeout_ms=3000, bootstrap_timeout_ms=4000)
    assert tls_broker["terminator"].handshakes == 0


# --- MSK IAM ------------------------------------------------------------------------------------

def test_msk_iam_tokens_are_sigv4_presigned_connect_requests_from_the_default_credentials(monkeypatch):
    """The token is what MSK verifies: a presigned `kafka-cluster:Connect` for the cluster's
    region by the credentials boto3 finds. Re-signing the same request with botocore must give
    the same signature."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    connection = KafkaConnection.from_url("kafka+iam://b-1.c.x1.kafka.eu-central-1.amazonaws.com:9098")
    config = connection.client_config()
    assert config["security_protocol"] == "SASL_SSL" and config["sasl_mechanism"] == "OAUTHBEARER"
    provider = config["sasl_oauth_token_provider"]
    token = provider.token()
    assert provider.token() == token  # reused until close to expiry
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.netloc == "kafka.eu-central-1.amazonaws.com"
    assert query["Action"] == "kafka-cluster:Connect" and query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    access_key, day, region, service, _ = query["X-Amz-Credential"].split("/")
    assert (access_key, region, service) == ("AKIDEXAMPLE", "eu-central-1", "kafka-cluster")
    assert int(query["X-Amz-Expires"]) == 900
    # Recompute the signature of the signed part (everything but the signature and the
    # User-Agent the signer appends afterwards) at the instant it names: botocore's own SigV4.
    signed = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("X-Amz-Signature", "User-Agent")]
    request = AWSRequest(method="GET", url=f"https://{parts.netloc}/?{urlencode(signed)}")
    request.context["timestamp"] = query["X-Amz-Date"]
    auth = SigV4QueryAuth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                          "kafka-cluster", "eu-central-1", expires=900)
    canonical = auth.canonical_request(request)
    assert query["X-Amz-Signature"] == auth.signature(auth.string_to_sign(request, canonical), request)
    # kafka-python sends it as the OAUTHBEARER initial response.
    from kafka.net.sasl.oauth import SaslMechanismOAuth

    assert f"auth=Bearer {token}".encode() in SaslMechanismOAuth(**config).auth_bytes()


def test_msk_iam_without_a_region_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ValueError, match=r"add \?region="):
        MskIamTokenProvider(KafkaConnection.from_url("kafka+iam://10.0.0.5:9098").region)
