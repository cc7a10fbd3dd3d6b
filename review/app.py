"""The review web tool: FastAPI pages and a JSON API over ``ReviewService``.

``create_app(store_url, users_file, labels)`` is what ``clipwatch review`` and the demo serve.
Pages are Jinja2 templates with autoescaping (every user string is escaped; data for the
scripts travels as JSON in ``<script type="application/json">``, never as code), scripts are
the esbuild bundle in ``static/dist`` (Wavesurfer.js from npm, nothing from a CDN), and a
Content-Security-Policy allows scripts from this origin only.

Every error is ``{"error": {"code", "message"}}`` with a 4xx status, counted in
``clipwatch_review_requests_total{route, outcome}``; nothing is written half-way (see
``review/service.py``).
"""

from __future__ import annotations

import base64
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from clipwatch import metrics
from clipwatch.blobs import SegmentReader
from clipwatch.errors import ClipwatchError, InvalidRequest
from clipwatch.records import QUALITY_FLAGS, ReviewTask
from clipwatch.store import PredictionStore, open_store

from . import exports
from .auth import SESSION_COOKIE, SESSION_SECONDS, Sessions, User, UsersFile, require
from .errors import InvalidAnnotation, PayloadTooLarge, Unauthorized
from .media import MediaCache, byte_range
from .service import AuditIn, LabelsIn, ReviewService

log = logging.getLogger("clipwatch.review")
HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_BODY_BYTES = 256 * 1024  # 200 segments with text fit in a fraction of this
SPEEDS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4)  # playback rates on the clip page
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def task_ref(task_id: str) -> str:
    """Task ids hold the stream id (often a URI with '/' and '#'): URLs carry them base64url."""
    return base64.urlsafe_b64encode(task_id.encode()).decode().rstrip("=")


def task_id_of(ref: str) -> str:
    try:
        return base64.urlsafe_b64decode(ref + "=" * (-len(ref) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(f"malformed task reference {ref!r}") from None


def create_app(store: str | PredictionStore, users: str | Path | UsersFile, labels: list[str],
               reader: Optional[SegmentReader] = None, lease_seconds: float = 600.0,
               page_size: int = 10, secret: Optional[bytes] = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The app. ``store``: a store URL or object; ``users``: the users file (or loaded);
    ``labels``: the activity classes reviewers choose from (the model's classes.txt);
    ``reader``: where segments are read (allow-lists!); ``secret``: signs session cookies
    (random per process unless given, so restarting logs everyone out)."""
    if not labels:
        raise ValueError("the review tool needs the list of activity labels (the model's classes)")
    if not (STATIC / "dist" / "clip.js").is_file():
        raise RuntimeError(f"the review UI is not built ({STATIC / 'dist'} is missing): run `make ui`")
    users = users if isinstance(users, UsersFile) else UsersFile.load(users)
    store = open_store(store) if isinstance(store, str) else store
    reader = reader or SegmentReader()
    media = MediaCache(reader)
    service = ReviewService(store, list(labels), lambda uri: (media.get(uri).duration, media.get(uri).fps),
                            lease_seconds=lease_seconds, page_size=page_size, clock=clock)
    sessions = Sessions(users, secret)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                            autoescape=select_autoescape(["html"]))

    app = FastAPI(title="clipwatch review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service, app.state.store, app.state.media = service, store, media
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # --- plumbing: errors, limits, headers, identity ----------------------------------------

    def route_name(request: Request) -> str:
        route = request.scope.get("route")
        return getattr(route, "path", "unmatched")

    def error(request: Request, exc: ClipwatchError) -> Response:
        metrics.REVIEW_REQUESTS.labels(route_name(request), exc.code).inc()
        wants_html = "text/html" in request.headers.get("accept", "") and request.method == "GET"
        if wants_html and exc.status == 401:
            return RedirectResponse("/login", status_code=303)
        return JSONResponse(exc.to_json(), status_code=exc.status)

    @app.exception_handler(ClipwatchError)
    async def on_error(request: Request, exc: ClipwatchError):
        log.info("%s %s rejected: %s", request.method, request.url.path, exc.message)
        return error(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        return error(request, InvalidRequest(str(exc.errors()[0].get("msg", "invalid request"))))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception):
        log.exception("review request failed")
        metrics.REVIEW_REQUESTS.labels(route_name(request), "internal_error").inc()
        return JSONResponse({"error": {"code": "internal_error", "message": "internal error; see the server log"}},
                            status_code=500)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return error(request, PayloadTooLarge(f"request body of {length} bytes; the limit is {MAX_BODY_BYTES}"))
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        if 200 <= response.status_code < 400 and request.url.path.startswith("/api/"):
            metrics.REVIEW_REQUESTS.labels(route_name(request), "ok").inc()
        return response

    def identify(request: Request, write: bool = False) -> User:
        """The caller, by bearer token or session cookie; writes by cookie need the CSRF token."""
        now = clock()
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return users.by_token(auth[7:].strip(), now)
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise Unauthorized("log in first (or send Authorization: Bearer <token>)")
        user, csrf = sessions.read(cookie, now)
        if write and request.headers.get("x-csrf-token") != csrf:
            raise Unauthorized("missing or wrong CSRF token; reload the page")
        return user

    def csrf_of(request: Request) -> str:
        cookie = request.cookies.get(SESSION_COOKIE)
        return sessions.read(cookie, clock())[1] if cookie else ""

    async def body_as(request: Request, model: type[BaseModel]):
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request body of {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                                 for e in exc.errors()[:5])
            raise InvalidAnnotation(problems) from None

    def page(name: str, request: Request, user: Optional[User], **data) -> HTMLResponse:
        boot = {"user": user.name if user else None, "role": user.role if user else None,
                "csrf": csrf_of(request) if user else "", **data}
        html = templates.get_template(name).render(user=user, boot=boot, **data)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def task_json(t: ReviewTask, now: float) -> dict:
        return {**t.model_dump(exclude={"revision"}), "ref": task_ref(t.task_id),
                "leased": t.lease_owner is not None and (t.lease_expires or 0) > now}

    # --- pages ------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request):
        return page("login.html", request, None)

    @app.post("/login")
    async def login(request: Request):
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            raise Unauthorized("cross-site login refused")
        raw = (await request.body()).decode(errors="replace")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                token = str(json.loads(raw).get("token", ""))
            except (ValueError, AttributeError):
                raise InvalidRequest("expected JSON {\"token\": \"…\"}") from None
        else:
            token = (parse_qs(raw).get("token") or [""])[0]
        user = users.by_token(token.strip(), clock())
        cookie, _ = sessions.issue(user, clock())
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/logout")
    def logout(request: Request):
        # a plain form (no CSRF header); the SameSite=Strict cookie never rides a cross-site post
        identify(request)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/", response_class=HTMLResponse)
    def queue_page(request: Request):
        return page("queue.html", request, identify(request), page_name="queue")

    @app.get("/clip/{ref}", response_class=HTMLResponse)
    def clip_page(ref: str, request: Request):
        user = identify(request)
        t = service.task(task_id_of(ref))
        return page("clip.html", request, user, page_name="clip", ref=ref, task_id=t.task_id,
                    labels=service.labels, quality_flags=list(QUALITY_FLAGS), speeds=list(SPEEDS))

    @app.get("/operator", response_class=HTMLResponse)
    def operator_page(request: Request):
        return page("operator.html", request, identify(request), page_name="operator")

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/metrics")
    def prometheus():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # --- API: the queue and leases ----------------------------------------------------------

    @app.get("/api/me")
    def me(request: Request):
        user = identify(request)
        return {"name": user.name, "role": user.role, "labels": service.labels,
                "quality_flags": list(QUALITY_FLAGS)}

    @app.get("/api/queue")
    async def queue(request: Request, limit: int = 200):
        identify(request)
        ordered, kind = await run_in_threadpool(service.queue)
        now = clock()
        return {"features": kind, "page_size": service.page_size,
                "tasks": [{**task_json(i.task, now), "rank": i.rank, "cluster": i.cluster,
                           "centroid": i.centroid} for i in ordered[:limit]]}

    # A leased clip is remuxed in the background while the browser loads the page (about a
    # second for a 10 s 720p segment, more on a busy machine).
    warm = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-media")

    def prefetch(t: Optional[ReviewTask]) -> None:
        if t is not None:
            warm.submit(lambda uri=t.segment_uri: _quietly(media.get, uri))

    @app.post("/api/next")
    async def next_task(request: Request):
        user = identify(request, write=True)
        t = await run_in_threadpool(service.next_task, user.name)
        prefetch(t)
        return {"task": task_json(t, clock()) if t else None}

    @app.post("/api/tasks/{ref}/lease")
    def lease(ref: str, request: Request):
        user = identify(request, write=True)
        t = service.lease(task_id_of(ref), user.name)
        prefetch(t)
        return {"task": task_json(t, clock())}

    @app.post("/api/tasks/{ref}/skip")
    def skip(ref: str, request: Request):
        user = identify(request, write=True)
        service.skip(task_id_of(ref), user.name)
        return {"skipped": True}

    @app.get("/api/tasks/{ref}")
    async def task_detail(ref: str, request: Request):
        identify(request)
        t = service.task(task_id_of(ref))
        clip = await run_in_threadpool(media.get, t.segment_uri)
        prediction = store.get_prediction(t.stream_id, t.sequence)
        anns = service.annotations(t)
        audits = store.audits(t.task_id)
        return {"task": task_json(t, clock()),
                "prediction": prediction.model_dump(exclude={"embedding", "stored"}) if prediction else None,
                "media": {"url": f"/media/{ref}.mp4", "duration": clip.duration, "fps": clip.fps,
                          "motion": clip.motion},
                "annotations": [a.model_dump() for a in anns],
                "audits": [a.model_dump() for a in audits],
                "labels": service.labels}

    @app.post("/api/tasks/{ref}/submit")
    async def submit(ref: str, request: Request):
        user = identify(request, write=True)
        require(user, "reviewer")
        labels = await body_as(request, LabelsIn)
        t = await run_in_threadpool(service.submit, task_id_of(ref), user.name, labels)
        return {"task": task_json(t, clock())}

    # --- API: audit ---------------------------------------------------------------------------

    @app.get("/api/audit")
    def audit_queue(request: Request):
        user = identify(request)
        require(user, "auditor")
        now = clock()
        return {"tasks": [task_json(t, now) for t in store.review_tasks("reviewed", 200)
                          if user.name not in t.reviewers],
                "audited": [task_json(t, now) for t in store.review_tasks("audited", 200)]}

    @app.post("/api/tasks/{ref}/audit")
    async def audit(ref: str, request: Request):
        user = identify(request, write=True)
        require(user, "auditor")
        req = await body_as(request, AuditIn)
        record = await run_in_threadpool(service.audit, task_id_of(ref), user.name, req)
        return {"audit": record.model_dump()}

    # --- API: operator view and exports -----------------------------------------------------

    @app.get("/api/streams")
    def streams(request: Request, recent: int = 12):
        identify(request)
        now = clock()
        out = []
        for stream_id in store.streams():
            latest = store.recent(stream_id, max(1, min(recent, 100)))
            newest = latest[0] if latest else None
            created = _epoch(newest.created_at) if newest else None
            out.append({
                "stream_id": stream_id,
                "latest_sequence": newest.sequence if newest else None,
                "seconds_since_last": round(now - created, 1) if created else None,
                # how long after the segment began its prediction was stored, when known
                "processing_lag": (round(created - newest.start_time, 1)
                                   if newest and created and newest.start_time else None),
                "segments": [{"sequence": p.sequence, "label": p.label, "confidence": round(p.confidence, 4),
                              "human_label": p.human_label, "status": p.status,
                              "reviewed_by": p.reviewed_by, "needs_review": p.review.needs_review,
                              "created_at": p.created_at} for p in latest]})
        return {"streams": out, "pending_tasks": len(store.review_tasks("pending", 10_000))}

    @app.get("/api/export/{fmt}")
    def export_api(fmt: str, request: Request, redact: bool = True):
        user = identify(request)
        require(user, "admin")
        if fmt == "groundtruth":
            lines = exports.groundtruth_lines(store, service.labels, redact=redact)
            return Response("".join(json.dumps(x) + "\n" for x in lines), media_type="application/jsonl")
        if fmt == "labelstudio":
            # the media are referenced as `clipwatch export --format labelstudio` writes them
            return JSONResponse(exports.labelstudio_tasks(store, service.labels, redact=redact)[0])
        raise InvalidRequest(f"format {fmt!r}: the API exports groundtruth or labelstudio "
                             "(`clipwatch export --format training` writes a dataset folder)")

    # --- media ------------------------------------------------------------------------------

    @app.get("/media/{ref}.mp4")
    async def clip_media(ref: str, request: Request):
        identify(request)
        t = service.task(task_id_of(ref))
        clip = await run_in_threadpool(media.get, t.segment_uri)
        data, size = clip.mp4, len(clip.mp4)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
        try:
            span = byte_range(request.headers.get("range"), size)
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
        if span is None:
            return Response(data, media_type="video/mp4", headers=headers)
        a, b = span
        headers["Content-Range"] = f"bytes {a}-{b}/{size}"
        return Response(data[a:b + 1], status_code=206, media_type="video/mp4", headers=headers)

    return app


def _quietly(fn, *args) -> None:
    """Background warm-up: a failure shows up (with its message) when the page asks for it."""
    try:
        fn(*args)
    except Exception:  # noqa: BLE001
        log.debug("prefetch failed", exc_info=True)


def _epoch(iso: str) -> Optional[float]:
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
