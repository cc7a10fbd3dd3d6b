"""The SageMaker inference container contract over HTTP: ``GET /ping``, ``POST /invocations``
(JSON naming a segment, answered with the Prediction as JSON), plus ``GET /metrics``.

Bad input never reaches a stack trace: every problem is a 4xx JSON body
``{"error": {"code", "message"}}``, counted in ``clipwatch_endpoint_invocations_total`` by code.

Overload is explicit: past ``max_queue`` invocations in flight, a request is answered at once
with 429 and ``Retry-After`` (the SageMaker Runtime route: the ``ThrottlingException`` boto3
retries) instead of waiting in an unbounded queue, whose latency and memory would grow until
every caller timed out.
"""

from __future__ import annotations

import json
import logging
import math
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from clipwatch import metrics
from clipwatch.errors import ClipwatchError, Overloaded, SegmentTooLarge, UnsupportedMediaType
from clipwatch.records import InvocationRequest

from . import deployment
from .decode import DEFAULT_DECODER
from .predictor import Endpoint

log = logging.getLogger("clipwatch.endpoint")
MAX_BODY_BYTES = 64 * 1024  # a request names a segment; the segment itself never travels here
_NOT_JSON = ("video/", "audio/", "image/", "multipart/", "application/x-www-form-urlencoded")
DEFAULT_MAX_QUEUE = 16  # invocations in flight per instance before 429 (a few seconds of work)


class Admission:
    """Counts invocations in flight (on the event loop: no lock) and says when to come back:
    after about the recent latency of an invocation, by when the ones ahead are answered."""

    def __init__(self, max_queue: int):
        self.max_queue, self.in_flight, self.mean_s = max_queue, 0, 1.0

    def enter(self) -> None:
        if self.in_flight >= self.max_queue:
            wait = max(1, min(60, math.ceil(self.mean_s)))
            raise Overloaded(f"{self.in_flight} invocations in flight, the endpoint queues at most "
                             f"{self.max_queue}: retry after {wait} s", wait)
        self.in_flight += 1

    def leave(self, took_s: float) -> None:
        self.in_flight -= 1
        self.mean_s = 0.9 * self.mean_s + 0.1 * took_s


def create_app(endpoint: Endpoint, max_queue: int = DEFAULT_MAX_QUEUE) -> FastAPI:
    app = FastAPI(title="clipwatch endpoint", docs_url=None, redoc_url=None)
    admission = Admission(max_queue)

    @app.get("/ping")
    def ping():
        classifier = endpoint.classifier  # the serving one: a promotion may swap it (Endpoint.swap)
        watcher = endpoint.watcher
        return {"status": "healthy", "model_version": classifier.card.version,
                "architecture": classifier.card.architecture, "device": classifier.device,
                "backend": classifier.backend, "precision": endpoint.active.precision,
                "decoder": endpoint.decoder,
                "classes": len(classifier.classes), "review_routing": classifier.routing_status,
                "deployment": str(watcher.deployment) if watcher is not None else None}

    @app.get("/metrics")
    def prometheus_metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def invoke(request: Request) -> tuple[int, bytes, dict]:
        """Run one invocation; the status, JSON body and headers the container answers with."""
        try:
            admission.enter()
        except Overloaded as exc:
            metrics.INVOCATIONS.labels(exc.code).inc()
            return exc.status, json.dumps(exc.to_json()).encode(), {"Retry-After": str(exc.retry_after_s)}
        started = time.monotonic()
        with metrics.IN_FLIGHT.track_inprogress():
            try:
                content_type = request.headers.get("content-type", "").lower()
                if content_type.startswith(_NOT_JSON):
                    raise UnsupportedMediaType(
                        f"content type {content_type!r}: send JSON naming the segment "
                        '({"s3_uri": "s3://bucket/key.ts"}), not the media itself')
                body = await request.body()
                if len(body) > MAX_BODY_BYTES:
                    raise SegmentTooLarge(f"request body of {len(body)} bytes; the limit is "
                                          f"{MAX_BODY_BYTES} (send the segment's URI, not its bytes)")
                parsed = InvocationRequest.parse(body)
                prediction = await run_in_threadpool(endpoint.invoke, parsed)
            except ClipwatchError as exc:
                metrics.INVOCATIONS.labels(exc.code).inc()
                log.info("rejected invocation: %s", exc.message)
                return exc.status, json.dumps(exc.to_json()).encode(), {}
            except Exception:
                metrics.INVOCATIONS.labels("internal_error").inc()
                log.exception("invocation failed")
                return 500, json.dumps({"error": {"code": "internal_error",
                                                  "message": "internal error; see the endpoint log"}}).encode(), {}
            finally:
                admission.leave(time.monotonic() - started)
            metrics.INVOCATIONS.labels("ok").inc()
            return 200, prediction.model_dump_json().encode(), {}

    @app.post("/invocations")
    async def invocations(request: Request):
        """The container contract."""
        status, body, headers = await invoke(request)
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    @app.post("/endpoints/{endpoint_name}/invocations")
    async def runtime_invocations(endpoint_name: str, request: Request):
        """The SageMaker Runtime API route, so boto3's ``sagemaker-runtime`` client works with
        ``endpoint_url`` pointed here. Like SageMaker, a container error becomes a 424
        ModelError carrying the original status and body."""
        status, body, headers = await invoke(request)
        if status == 200:
            return Response(body, media_type="application/json")
        if status == 429:  # SageMaker's own throttling answer, which boto3 retries with backoff
            return JSONResponse({"message": json.loads(body)["error"]["message"]}, status_code=429,
                                headers={**headers, "x-amzn-ErrorType": "ThrottlingException"})
        kind = "client" if status < 500 else "server"
        return JSONResponse(
            {"Message": f"Received {kind} error ({status}) from primary with message "
                        f'"{body.decode()}". See the endpoint log.',
             "OriginalStatusCode": status, "OriginalMessage": body.decode()},
            status_code=424, headers={"x-amzn-ErrorType": "ModelError"})

    return app


def build_app(model: str, settings, clips: int = 1, snap_to_keyframe: bool = True,
              runtime: str = "auto", precision: str = "auto", decode_workers: int | None = None,
              max_batch_clips: int = 4, decoder: str = DEFAULT_DECODER,
              max_queue: int = DEFAULT_MAX_QUEUE, propose: bool = True) -> FastAPI:
    """Load the model and wire the endpoint from settings, warmed up: decode workers running
    (``decode_workers`` None = one per core, 0 = decode in the request thread) and one forward
    done. ``runtime``/``precision``: see ``inference.runtime`` (auto = the fastest correct).
    ``model`` a deployment (``inference.deployment``): its promotions are served as they come."""
    from .decode_pool import default_workers
    from .model import load_classifier

    def load(source):
        return load_classifier(source, runtime=runtime, precision=precision)

    endpoint = Endpoint.from_settings(
        load(model), settings, clips=clips, snap_to_keyframe=snap_to_keyframe,
        decode_workers=default_workers() if decode_workers is None else decode_workers,
        max_batch_clips=max_batch_clips, decoder=decoder, propose=propose)
    endpoint.warm_up()
    if deployment.current(model) is not None:
        endpoint.follow(model, load)
    app = create_app(endpoint, max_queue)
    app.router.on_shutdown.append(endpoint.close)
    return app


class BackgroundServer:
    """uvicorn in a daemon thread on loopback: for tests, the demo and benchmarks."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import threading

        import uvicorn

        from clipwatch.localstack import free_port

        port = port or free_port(host)
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    timeout_keep_alive=75))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="endpoint")

    def __enter__(self) -> "BackgroundServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"endpoint did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
