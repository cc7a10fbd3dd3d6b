"""AWS on loopback: moto's server mode speaks the real S3, SQS, DynamoDB and Application Auto
Scaling HTTP APIs, so boto3 code runs unchanged against it (tests, the demo, load tests)."""

from __future__ import annotations

import os
import socket

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB",
                      "AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalAws:
    """Start moto on a free loopback port; ``use()`` points this process's boto3 at it."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        from moto.server import ThreadedMotoServer

        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self._server = ThreadedMotoServer(ip_address=host, port=self.port, verbose=False)

    def start(self) -> "LocalAws":
        self._server.start()
        return self

    def use(self) -> dict[str, str]:
        """Set credentials, region and endpoint variables in os.environ; return them."""
        env = {name: self.url for name in ENDPOINT_VARIABLES}
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_SESSION_TOKEN="testing", AWS_DEFAULT_REGION="us-east-1")
        os.environ.update(env)
        return env

    def stop(self) -> None:
        self._server.stop()
