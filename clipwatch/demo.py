"""The main job on embedded defaults (``clipwatch demo``).

A synthetic live stream (training.synth's live mode: ffmpeg's HLS muxer with a sliding window,
activities that change every few segments, ambiguous stretches, ground truth per segment) is
written while the HLS follower follows it; each new segment goes over the in-process bus to a
worker that runs the committed demo model (``models/demo``) in-process and stores the
prediction in SQLite: the same follower and worker code as the Kafka deployment, with the
in-process bus in place of Kafka. A live table shows every segment against the truth; the
Prometheus metrics are served all along; a summary (accuracy, review rate, lag percentiles) is
written to ``summary.json`` with a timeline chart beside it.

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
    for col in ("segment", "time", "truth", "predicted", "conf.", "review", "model ms", "lag s"):
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
                  shown, label, f"{r['confidence']:.2f}", "yes" if r["review"] else "",
                  f"{r['model_ms']:.0f}", f"{r['lag_s']:.1f}")
    return t


def run(out_dir: Path = Path("demo-output"), segments: int = 8, seed: int = 7, realtime: bool = False,
        port: int = 0, keep_serving: bool = False, bus_url: str = "memory") -> dict:
    import inference  # noqa: F401  -- sets MXNet's thread count before MXNet loads
    import mxnet  # noqa: F401  -- before decord (see inference/decode.py)

    from clipwatch.config import Settings
    from inference.model import load_classifier
    from inference.predictor import Endpoint
    from inference.server import BackgroundServer
    from streaming.bus import open_bus
    from streaming.clients import InProcessClient
    from streaming.embedded import EmbeddedPipeline
    from streaming.events import Topics
    from streaming.follower import Follower
    from streaming.sinks import DirSink
    from streaming.state import StateStore
    from streaming.worker import ReviewQueueProbe, Worker
    from training.synth import write_live_stream

    console = Console()
    started = time.monotonic()
    # The live table reports each segment; the components' own logs would scroll it away.
    logging.getLogger("clipwatch").setLevel(logging.WARNING)
    stream_dir, spool, db = out_dir / "stream", out_dir / "segments", out_dir / "clipwatch.db"
    for old in (stream_dir, spool):  # each run is a new stream: a former run's state would skip it
        shutil.rmtree(old, ignore_errors=True)
    for old in (db, out_dir / "state.db"):
        for f in old.parent.glob(old.name + "*"):
            f.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)

    with console.status("preparing the demo model…"):
        classifier = load_classifier(DEMO_MODEL)
        classifier.warm_up()
    model_ready_s = time.monotonic() - started
    endpoint = Endpoint.from_settings(classifier, Settings(store_url=f"sqlite:///{db}",
                                                           allowed_dirs=(spool.resolve(),)))

    encoder_error: list[BaseException] = []

    def encode() -> None:
        try:
            write_live_stream(stream_dir, segments, seed=seed, list_size=6, realtime=realtime, progress=False)
        except BaseException as exc:  # reported below; the follower then never sees ENDLIST
            encoder_error.append(exc)

    rows: list[dict] = []
    lock = threading.Lock()

    def collect(event, prediction) -> None:
        with lock:
            rows.append({"segment": Path(event.source_uri).name, "sequence": event.sequence,
                         "duration": event.duration, "label": prediction.label,
                         "confidence": prediction.confidence, "review": prediction.review.needs_review,
                         "stored": prediction.stored, "model_ms": prediction.timings_ms.get("model", 0.0),
                         "invoke_ms": prediction.timings_ms.get("total", 0.0),
                         "lag_s": max(0.0, time.time() - event.ready_at)})

    # Over Kafka, topics of their own per run: a former run's segments are not this stream's.
    bus = open_bus(bus_url)
    topics = Topics.with_prefix("clipwatch" if bus_url == "memory" else f"demo-{uuid.uuid4().hex[:8]}")
    if bus_url != "memory":
        bus.ensure_topics(topics.all(), partitions=1)
    follower = Follower(str(stream_dir / "live.m3u8"),
                        lambda e: bus.publish(topics.segments, e.stream_id, e.model_dump_json().encode()),
                        DirSink(spool), StateStore(out_dir / "state.db"), stream_id=STREAM_ID,
                        poll_interval=1.0)  # a local file: cheap to reload, so lag stays low
    worker = Worker(bus, InProcessClient(endpoint), topics, on_prediction=collect)
    stop = threading.Event()
    with BackgroundServer(ops_app(), port=port) as server:
        threading.Thread(target=ReviewQueueProbe(endpoint.store, every_s=2.0).run, args=(stop,),
                         daemon=True).start()
        encoder = threading.Thread(target=encode, name="encoder", daemon=True)
        encoder.start()
        pipeline = EmbeddedPipeline(follower, worker, bus, wait_for_stream=True).start()
        status = (f"model {classifier.card.version} ready in {model_ready_s:.1f} s · bus {bus_url} · "
                  f"metrics {server.url}/metrics · {segments} × 10 s segments, "
                  f"{'real time' if realtime else 'encoded as fast as this machine can'}")
        with Live(row_table([], {}, status), console=console, refresh_per_second=4) as live:
            while not (pipeline.finished() or (encoder_error and pipeline.drained())):
                time.sleep(0.25)
                with lock:
                    live.update(row_table(list(rows), read_truth(stream_dir), status))
            with lock:
                live.update(row_table(list(rows), read_truth(stream_dir), status))
        pipeline.stop()
        stop.set()
        if encoder_error:
            raise RuntimeError(f"the synthetic live stream failed: {encoder_error[0]}")
        if pipeline.error:
            raise pipeline.error
        summary = summarize(rows, read_truth(stream_dir), worker, classifier, endpoint, db,
                            model_ready_s, time.monotonic() - started, server.url, bus_url)
        bus.close()
        (out_dir / "summary.json").write_text(json.dumps({"summary": summary, "segments": rows}, indent=2))
        plot(rows, read_truth(stream_dir), out_dir / "summary.png")
        console.print_json(json.dumps(summary))
        console.print(f"written: {out_dir / 'summary.json'}, {out_dir / 'summary.png'}, {db}")
        if keep_serving:
            console.print(f"serving {server.url}/metrics; Ctrl-C to stop")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return summary


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

    return {
        "segments": len(rows), "dead_lettered": worker.outcomes["dead_lettered"], "bus": bus_url,
        "model": classifier.card.version, "device": classifier.device,
        "accuracy": share(scored, "correct"),
        "accuracy_unambiguous": share([r for r in scored if not r["ambiguous"]], "correct"),
        "review_rate": share(rows, "review"),
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
