"""`clipwatch review`, `clipwatch review-user` and `clipwatch export`: the human-review web tool,
its users, and exports of reviewed labels."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _labels(args) -> list[str]:
    """The activity classes: --labels FILE (one a line) or the model directory's classes.txt."""
    source = Path(args.labels) if args.labels else Path(args.model) / "classes.txt"
    if not source.is_file():
        raise ValueError(f"{source}: no label list (give --labels classes.txt or --model DIR)")
    labels = [line.strip() for line in source.read_text().splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"{source}: the label list is empty")
    return labels


def _reader(args):
    from clipwatch.blobs import SegmentReader
    from clipwatch.config import Settings

    env = dict(os.environ)
    if args.allow_dir:
        env["CLIPWATCH_ALLOWED_DIRS"] = ",".join(args.allow_dir)
    if args.allow_bucket:
        env["CLIPWATCH_ALLOWED_BUCKETS"] = ",".join(args.allow_bucket)
    s = Settings.from_env(env)
    return SegmentReader(s.allowed_buckets, s.allowed_dirs, s.max_segment_bytes), s


def _review(args) -> int:
    import uvicorn

    try:
        reader, settings = _reader(args)
        from review.app import create_app

        secret = os.environ.get("CLIPWATCH_REVIEW_SECRET", "").encode() or None
        app = create_app(args.store or settings.store_url, args.users, _labels(args), reader=reader,
                         lease_seconds=args.lease_seconds, page_size=args.page_size, secret=secret)
    except (ValueError, RuntimeError) as exc:
        print(f"clipwatch review: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _user(args) -> int:
    from review.auth import UsersFile

    try:
        token = UsersFile.add(args.users, args.name, args.role, args.days)
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"clipwatch review-user: {args.users}: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name} ({args.role}) added to {args.users}. Their token (shown once):\n{token}")
    return 0


def _export(args) -> int:
    from clipwatch.store import open_store
    from review.exports import export

    try:
        reader, settings = _reader(args)
        store = open_store(args.store or settings.store_url)
        media_url = None
        if args.media_url:
            prefix = args.media_url.rstrip("/")
            media_url = lambda name: f"{prefix}/{name}"  # noqa: E731
        summary = export(store, args.format, Path(args.out), _labels(args), reader,
                         redact=not args.no_redact, media_url=media_url)
    except (ValueError, RuntimeError) as exc:
        print(f"clipwatch export: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a segment that cannot be read, a store that cannot be reached
        from clipwatch.errors import ClipwatchError

        if isinstance(exc, ClipwatchError):
            print(f"clipwatch export: {exc.message}", file=sys.stderr)
            return 1
        raise
    for skip in summary.get("skipped", []):
        print(f"clipwatch export: skipped task {skip['task_id']} ({skip['segment_uri']}): {skip['reason']}",
              file=sys.stderr)
    print(json.dumps(summary))
    return 0


def _common(p) -> None:
    _store_options(p)
    p.add_argument("--model", default="models/demo", help="model directory whose classes.txt lists the labels")
    p.add_argument("--labels", help="label list, one a line (instead of --model)")


def _store_options(p) -> None:
    """Where reviewed labels are (--store) and the segments they name may be read from
    (what ``_reader`` reads): the review commands' and ``clipwatch retrain``'s."""
    p.add_argument("--store", help="sqlite:///path.db or dynamodb://prefix (default: env CLIPWATCH_STORE)")
    p.add_argument("--allow-dir", action="append", help="local folder segments may be read from (repeatable)")
    p.add_argument("--allow-bucket", action="append", help="S3 bucket allow-list entry (repeatable)")


def register(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    review = sub.add_parser(
        "review", help="run the human-review web tool", formatter_class=raw,
        description="Serve the review tool: the queue (uncertain first, diverse), the clip page "
                    "(video + Wavesurfer timeline, tracks, recording, labels), audit and the "
                    "operator view. Users log in with tokens from `clipwatch review-user add`.",
        epilog="example:\n  clipwatch review-user add alice --role reviewer --users users.json\n"
               "  clipwatch review --port 8000 --store sqlite:///preds.db --users users.json "
               "--model models/demo --allow-dir /data/hls")
    _common(review)
    review.add_argument("--users", required=True, help="users file (JSON; see `clipwatch review-user`)")
    review.add_argument("--host", default="127.0.0.1")
    review.add_argument("--port", type=int, default=8000)
    review.add_argument("--lease-seconds", type=float, default=600.0, help="how long a reviewer holds a task")
    review.add_argument("--page-size", type=int, default=10,
                        help="b: clusters of the uncertain half, served first (default 10)")
    review.add_argument("--log-level", default="info")
    review.set_defaults(run=_review)

    user = sub.add_parser(
        "review-user", help="add a review-tool user and print their token", formatter_class=raw,
        description="Add (or replace) a user with a fresh token; only its SHA-256 is stored.",
        epilog="example:\n  clipwatch review-user add alice --role reviewer --users users.json --days 30")
    user.add_argument("action", choices=["add"])
    user.add_argument("name")
    user.add_argument("--role", choices=["reviewer", "auditor", "admin"], default="reviewer")
    user.add_argument("--users", required=True, help="users file to create or update")
    user.add_argument("--days", type=float, help="token lifetime in days (default: no expiry)")
    user.set_defaults(run=_user)

    exp = sub.add_parser(
        "export", help="export reviewed labels (Ground Truth, Label Studio, training list)",
        formatter_class=raw,
        description="Write reviewed and audited labels: groundtruth → OUT/output.manifest, "
                    "labelstudio → OUT/tasks.json + label_config.xml + media/ (MP4s Label Studio "
                    "plays: set LOCAL_FILES_DOCUMENT_ROOT=OUT, or upload media/ and give --media-url), "
                    "training → OUT/train.txt, val.txt, classes.txt and media/. Free text is "
                    "PII-redacted unless --no-redact.",
        epilog="example:\n  clipwatch export --format labelstudio --store sqlite:///preds.db --out ls/\n"
               "  clipwatch export --format labelstudio --store sqlite:///preds.db --out ls/ "
               "--media-url s3://bucket/review-media   # after: aws s3 sync ls/media s3://bucket/review-media\n"
               "  clipwatch export --format training --store sqlite:///preds.db --out data/reviewed "
               "--allow-dir /data/hls && clipwatch train --data data/reviewed --base models/demo --out models/reviewed")
    _common(exp)
    exp.add_argument("--format", required=True, choices=["groundtruth", "labelstudio", "training"])
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--no-redact", action="store_true", help="keep free text as typed")
    exp.add_argument("--media-url", help="labelstudio: reference media/<clip>.mp4 under this prefix (s3://… for "
                                         "Label Studio's S3 storage, https://…) instead of its local-files storage")
    exp.set_defaults(run=_export)
