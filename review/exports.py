"""Reviewed labels out, in the shapes other tools import unchanged:

- **Ground Truth** (``output.manifest``): one JSON line per clip, ``source`` plus the label
  attribute holding the custom audio/video segmentation task's worker responses — ``answers``
  with ``acceptanceTime``, ``submissionTime``, ``timeSpentInSeconds``, ``workerId`` and
  ``answerContent`` (``annotations`` with ``categories``, start/end timestamps, ``elapsedTime``
  and per-track ``streams`` of ``{id, start, end, text, …}``; whole-clip answers beside it) —
  and ``<attribute>-metadata`` as Ground Truth writes it.
- **Label Studio** (``tasks.json`` + ``label_config.xml`` + ``media/``): tasks with the model's
  prediction and score (Label Studio sorts by it), its proposed segments as scored
  ``timelinelabels`` regions, and every review as an annotation: ``timelinelabels`` regions in
  frames, per-region text, whole-clip choices, rating and notes. Media are the segments remuxed
  to faststart MP4s, referenced through Label Studio's local-files storage
  (``/data/local-files/?d=media/…``, the export folder being ``LOCAL_FILES_DOCUMENT_ROOT``) or
  under a ``--media-url`` prefix (``s3://…`` for its S3 storage, ``https://…``).
- **Training** (``train.txt``/``val.txt``/``classes.txt`` + ``media/``): the list-file form
  ``<path> <start s> <end s> <label>`` that ``training.datasets`` reads; segments are copied
  beside the lists so the folder is a self-contained dataset.

Free text is PII-redacted unless asked otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Iterator
from urllib.parse import urlencode
from xml.sax.saxutils import quoteattr

from clipwatch.blobs import SegmentReader
from clipwatch.errors import ClipwatchError
from clipwatch.records import Annotation, AuditRecord, Prediction, ReviewTask
from clipwatch.store import PredictionStore

from .pii import redact as redact_pii

LABEL_ATTRIBUTE = "clipwatch-review"
FORMATS = ("groundtruth", "labelstudio", "training")


def reviewed(store: PredictionStore, limit: int = 1_000_000) -> Iterator[tuple[ReviewTask, list[Annotation], list[AuditRecord]]]:
    """Every finished task (reviewed or audited) with its counted annotations, in order."""
    for status in ("reviewed", "audited"):
        for t in store.review_tasks(status, limit):
            by_id = {a.annotation_id: a for a in store.annotations(t.task_id)}
            anns = [by_id[i] for i in t.annotation_ids if i in by_id]
            if anns:
                yield t, anns, store.audits(t.task_id)


def final_annotation(t: ReviewTask, anns: list[Annotation]) -> Annotation:
    return next((a for a in anns if a.annotation_id == t.consensus_annotation_id), anns[-1])


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _http_date(iso: str) -> str:
    """``Mon, 04 Nov 2024 18:33:39 GMT``: how Ground Truth's audio/video tool writes
    ``startUTCTime``/``endUTCTime``."""
    return format_datetime(datetime.fromisoformat(iso).astimezone(timezone.utc), usegmt=True)


def _clean(text: str, redact: bool) -> str:
    return redact_pii(text) if redact else text


# --- Ground Truth ---------------------------------------------------------------------------

def gt_answer(a: Annotation, labels: list[str], redact: bool) -> dict:
    """One worker response as the Ground Truth audio/video segmentation tool writes it: each
    track is a category whose segments carry their class as ``id`` (one of
    ``categories[track]``); our own segment id and the quality flags ride in extra fields."""
    start, end = _ms(a.accepted_at), _ms(a.submitted_at)
    streams = {track: [] for track in a.tracks}
    for s in sorted(a.segments, key=lambda s: (s.track, s.start)):
        streams.setdefault(s.track, []).append({
            "id": s.label, "start": round(s.start, 3), "end": round(s.end, 3),
            "text": _clean(s.text, redact), "segmentId": s.id, "quality": list(s.quality)})
    content = {
        "annotations": {
            "categories": {track: list(labels) for track in streams},
            "startTimestamp": start, "endTimestamp": end,
            "startUTCTime": _http_date(a.accepted_at), "endUTCTime": _http_date(a.submitted_at),
            "elapsedTime": end - start,
            "streams": streams,
        },
    }
    label = a.clip_label()
    if label:
        content["activity"] = label
    if a.clip.model_correct is not None:
        content["modelCorrect"] = "yes" if a.clip.model_correct else "no"
    if a.clip.rating is not None:
        content["rate"] = {str(i): i == a.clip.rating for i in range(1, 6)}
    if a.clip.notes:
        content["notes"] = _clean(a.clip.notes, redact)
    return {"acceptanceTime": a.accepted_at, "submissionTime": a.submitted_at,
            "timeSpentInSeconds": round((end - start) / 1000, 3), "workerId": a.author,
            "workerMetadata": {"identityData": {"sub": a.author, "role": a.role}},
            "answerContent": content}


def groundtruth_lines(store: PredictionStore, labels: list[str], job_name: str = "clipwatch-review",
                      redact: bool = True) -> list[dict]:
    lines = []
    for t, anns, audits in reviewed(store):
        final = final_annotation(t, anns)
        lines.append({
            "source": t.segment_uri,
            "stream-id": t.stream_id, "sequence": t.sequence,
            "model-label": t.label, "model-confidence": round(t.confidence, 6),
            LABEL_ATTRIBUTE: {"answers": [gt_answer(a, labels, redact) for a in anns],
                              "label": final.clip_label()},
            f"{LABEL_ATTRIBUTE}-metadata": {
                "type": "groundtruth/custom", "job-name": job_name, "human-annotated": "yes",
                "creation-date": final.submitted_at,
                "adjustment-status": "adjusted" if any(x.decision == "adjusted" for x in audits) else "unadjusted",
                "status": t.status, "consensus-annotation-id": final.annotation_id,
                "reviewers": t.reviewers, "consensus": t.consensus,
                "audits": [{"auditor": x.auditor, "decision": x.decision,
                            "segment-iou": x.agreement.segment_iou, "label-iou": x.agreement.label_iou,
                            "comment": _clean(x.comment, redact)} for x in audits],
            },
        })
    return lines


def write_groundtruth(lines: list[dict], out: Path) -> None:
    """``output.manifest`` plus the per-object worker responses where Ground Truth keeps them
    (``annotations/worker-response/iteration-1/<n>.json``, n the manifest line)."""
    (out / "output.manifest").write_text("".join(json.dumps(x) + "\n" for x in lines))
    responses = out / "annotations" / "worker-response" / "iteration-1"
    responses.mkdir(parents=True, exist_ok=True)
    for n, line in enumerate(lines):
        (responses / f"{n}.json").write_text(json.dumps({"answers": line[LABEL_ATTRIBUTE]["answers"]}, indent=1))


# --- Label Studio ---------------------------------------------------------------------------

def label_config(labels: list[str]) -> str:
    def choice_list(tag: str) -> str:
        return "".join(f"<{tag} value={quoteattr(label)}/>" for label in labels)

    return ('<View>\n'
            '  <Header value="clipwatch review: label what happens, and when"/>\n'
            '  <Video name="video" value="$video" frameRate="$fps" timelineHeight="120"/>\n'
            f'  <TimelineLabels name="timeline" toName="video">{choice_list("Label")}</TimelineLabels>\n'
            '  <TextArea name="segment_text" toName="video" perRegion="true" editable="true"/>\n'
            f'  <Choices name="activity" toName="video" choice="single">{choice_list("Choice")}</Choices>\n'
            '  <Choices name="model_correct" toName="video" choice="single">'
            '<Choice value="yes"/><Choice value="no"/></Choices>\n'
            '  <Rating name="rating" toName="video" maxRating="5"/>\n'
            '  <TextArea name="notes" toName="video"/>\n'
            '</View>\n')


def _frame(seconds: float, fps: float) -> int:
    return int(round(seconds * fps)) + 1  # Label Studio counts frames from 1


def _frame_ranges(start: float, end: float, fps: float) -> list[dict]:
    """A stretch of seconds as Label Studio's inclusive frame range (at least one frame)."""
    first = _frame(start, fps)
    return [{"start": first, "end": max(_frame(end, fps) - 1, first)}]


def ls_result(a: Annotation, fps: float, redact: bool) -> list[dict]:
    out = []
    for s in a.segments:
        ranges = _frame_ranges(s.start, s.end, fps)
        out.append({"id": s.id, "from_name": "timeline", "to_name": "video", "type": "timelinelabels",
                    "origin": "manual", "value": {"ranges": ranges, "timelinelabels": [s.label]}})
        if s.text:
            out.append({"id": s.id, "from_name": "segment_text", "to_name": "video", "type": "textarea",
                        "value": {"ranges": ranges, "text": [_clean(s.text, redact)]}})
    label = a.clip_label()
    if label:
        out.append({"id": "activity", "from_name": "activity", "to_name": "video", "type": "choices",
                    "value": {"choices": [label]}})
    if a.clip.model_correct is not None:
        out.append({"id": "model_correct", "from_name": "model_correct", "to_name": "video",
                    "type": "choices", "value": {"choices": ["yes" if a.clip.model_correct else "no"]}})
    if a.clip.rating is not None:
        out.append({"id": "rating", "from_name": "rating", "to_name": "video", "type": "rating",
                    "value": {"rating": a.clip.rating}})
    if a.clip.notes:
        out.append({"id": "notes", "from_name": "notes", "to_name": "video", "type": "textarea",
                    "value": {"text": [_clean(a.clip.notes, redact)]}})
    return out


def _proposal_regions(prediction: Prediction | None, fps: float, labels: list[str]) -> list[dict]:
    """The model's proposed segments as Label Studio ``timelinelabels`` regions with scores, so
    Label Studio shows them as proposals too (labels the config lacks cannot be shown)."""
    if prediction is None or prediction.presegmentation is None:
        return []
    out = []
    for k, p in enumerate(prediction.presegmentation.proposals):
        if p.label not in labels:
            continue
        out.append({"id": f"proposal{k}", "from_name": "timeline", "to_name": "video",
                    "type": "timelinelabels", "score": round(p.confidence, 4),
                    "value": {"ranges": _frame_ranges(p.start, p.end, fps),
                              "timelinelabels": [p.label]}})
    return out


def local_files_url(name: str) -> str:
    """How Label Studio's local-files storage serves ``media/<name>`` of an export folder that
    is its ``LOCAL_FILES_DOCUMENT_ROOT``."""
    return "/data/local-files/?" + urlencode({"d": f"media/{name}"})


def labelstudio_tasks(store: PredictionStore, labels: list[str], media_url=None, redact: bool = True,
                      playable=lambda t: None) -> tuple[list[dict], list[dict]]:
    """Tasks (media as ``media_url(mp4 name)``, default ``local_files_url``) and the tasks
    skipped, with the reason ``playable(task)`` gave (None: it plays)."""
    media_url = media_url or local_files_url
    tasks, skipped = [], []
    for t, anns, _ in reviewed(store):
        problem = playable(t)
        if problem:
            skipped.append({"task_id": t.task_id, "segment_uri": t.segment_uri, "reason": problem})
            continue
        final = final_annotation(t, anns)
        fps = final.clip_fps or 30.0
        prediction = store.get_prediction(t.stream_id, t.sequence)
        score = prediction.confidence if prediction else t.confidence
        tasks.append({
            "data": {"video": media_url(media_name(t.segment_uri)), "fps": fps, "segment_uri": t.segment_uri,
                     "stream_id": t.stream_id, "sequence": t.sequence, "task_id": t.task_id},
            "predictions": [{"model_version": t.model_version, "score": round(score, 6), "result": [
                {"id": "activity", "from_name": "activity", "to_name": "video", "type": "choices",
                 "value": {"choices": [t.label]}}, *_proposal_regions(prediction, fps, labels)]}],
            "annotations": [{"result": ls_result(a, a.clip_fps or fps, redact),
                             "lead_time": round((_ms(a.submitted_at) - _ms(a.accepted_at)) / 1000, 3),
                             "created_at": a.submitted_at,
                             "ground_truth": a.annotation_id == final.annotation_id}
                            for a in anns],
        })
    return tasks, skipped


def write_labelstudio(store: PredictionStore, out: Path, labels: list[str], reader: SegmentReader,
                      redact: bool = True, media_url=None) -> dict:
    """``tasks.json``, ``label_config.xml`` and ``media/``: each segment remuxed to a faststart
    MP4 (browsers, and so Label Studio, do not play MPEG-TS). A segment that cannot be read or
    remuxed skips its task, with the reason; the rest is written."""
    from .media import to_mp4

    (out / "media").mkdir(parents=True, exist_ok=True)

    def playable(t: ReviewTask) -> str | None:
        target = out / "media" / media_name(t.segment_uri)
        if target.exists():
            return None
        try:
            target.write_bytes(to_mp4(reader.read(t.segment_uri)))
        except ClipwatchError as exc:
            return exc.message
        return None

    tasks, skipped = labelstudio_tasks(store, labels, media_url, redact, playable)
    (out / "tasks.json").write_text(json.dumps(tasks, indent=1))
    (out / "label_config.xml").write_text(label_config(labels))
    return {"format": "labelstudio", "file": str(out / "tasks.json"), "clips": len(tasks), "skipped": skipped}


# --- training list ----------------------------------------------------------------------------

def _safe_name(uri: str) -> str:
    digest = hashlib.sha1(uri.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", uri.rsplit("/", 1)[-1])[-60:]
    return f"{digest}_{stem}"


def media_name(uri: str) -> str:
    """The segment's file name in an export's ``media/`` as a playable MP4."""
    return _safe_name(uri).rsplit(".", 1)[0] + ".mp4"


def write_training(store: PredictionStore, out: Path, labels: list[str], reader: SegmentReader,
                   val_every: int = 5) -> dict:
    """``train.txt``/``val.txt`` (every ``val_every``-th clip by a hash of its key goes to
    validation, so re-exporting never moves a clip between splits), ``classes.txt`` and the
    segments under ``media/``."""
    out = Path(out)
    (out / "media").mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for t, anns, _ in reviewed(store):
        final = final_annotation(t, anns)
        name = _safe_name(t.segment_uri)
        target = out / "media" / name
        if not target.exists():
            target.write_bytes(reader.read(t.segment_uri))
        split = "val" if int(hashlib.sha1(t.task_id.encode()).hexdigest(), 16) % val_every == 0 else "train"
        spans = [(s.start, s.end, s.label) for s in sorted(final.segments, key=lambda s: s.start)]
        if not spans and final.clip_label():
            spans = [(0.0, final.clip_duration, final.clip_label())]
        for start, end, label in spans:
            lines[split].append(f"media/{name} {start:.3f} {end:.3f} {label}")
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in labels))
    for split, rows in lines.items():
        (out / f"{split}.txt").write_text("".join(f"{r}\n" for r in rows))
    return {split: len(rows) for split, rows in lines.items()}


def export(store: PredictionStore, fmt: str, out: Path, labels: list[str], reader: SegmentReader,
           redact: bool = True, media_url=None) -> dict:
    """Write one format into the folder ``out``; a summary of what was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "groundtruth":
        lines = groundtruth_lines(store, labels, redact=redact)
        write_groundtruth(lines, out)
        return {"format": fmt, "file": str(out / "output.manifest"), "clips": len(lines)}
    if fmt == "labelstudio":
        return write_labelstudio(store, out, labels, reader, redact, media_url)
    if fmt == "training":
        counts = write_training(store, out, labels, reader)
        return {"format": fmt, "file": str(out / "train.txt"), **counts}
    raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
