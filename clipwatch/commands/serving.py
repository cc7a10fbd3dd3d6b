"""`clipwatch serve`: the endpoint (SageMaker container contract)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _serve(args) -> int:
    import uvicorn

    from clipwatch.config import Settings
    from clipwatch.errors import ModelUnavailable
    from inference.server import build_app

    if args.max_batch_clips < 1 or args.max_queue < 1 or (args.decode_workers is not None and args.decode_workers < 0):
        print("clipwatch serve: --max-batch-clips and --max-queue must be at least 1 and "
              "--decode-workers at least 0", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.store:
        env["CLIPWATCH_STORE"] = args.store
    if args.allow_dir:
        env["CLIPWATCH_ALLOWED_DIRS"] = ",".join(args.allow_dir)
    if args.allow_bucket:
        env["CLIPWATCH_ALLOWED_BUCKETS"] = ",".join(args.allow_bucket)
    if args.no_auto_int8:
        env["CLIPWATCH_AUTO_INT8"] = "off"
    try:
        app = build_app(args.model, Settings.from_env(env), clips=args.clips,
                        snap_to_keyframe=not args.no_keyframe_snap, runtime=args.runtime,
                        precision=args.precision, decode_workers=args.decode_workers,
                        max_batch_clips=args.max_batch_clips, decoder=args.decoder,
                        max_queue=args.max_queue, propose=not args.no_proposals)
    except ModelUnavailable as exc:
        print(f"clipwatch serve: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def register(sub) -> None:
    serve = sub.add_parser(
        "serve", help="run the endpoint (SageMaker container contract)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve GET /ping, POST /invocations, GET /metrics (and the SageMaker Runtime "
                    "route, so boto3's sagemaker-runtime client can point at it).",
        epilog="example:\n  clipwatch serve --model ./model --port 8080 --store sqlite:///preds.db "
               "--allow-dir /data/hls\n  clipwatch serve --model kinetics400 --allow-dir /data/hls   "
               "# DeepMind's Kinetics-400 I3D (clipwatch model fetch kinetics400)\n"
               "  clipwatch serve --model ./model --runtime mxnet   # the fp32 MXNet reference runtime\n"
               "  curl -H 'Content-Type: application/json' -d '{\"s3_uri\": \"s3://bucket/live/seg_00001.ts\"}' "
               "localhost:8080/invocations")
    serve.add_argument("--model", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"),
                       help="model directory, catalogue name (e.g. kinetics400, once `clipwatch model "
                            "fetch`ed) or GluonCV model-zoo name (default: /opt/ml/model)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", 8080)))
    serve.add_argument("--store", help="sqlite:///path.db (default) or dynamodb://prefix (env CLIPWATCH_STORE)")
    serve.add_argument("--allow-dir", action="append", help="local folder segments may be read from (repeatable)")
    serve.add_argument("--allow-bucket", action="append", help="S3 bucket allow-list entry (repeatable)")
    serve.add_argument("--clips", type=int, default=1, help="clips per segment, logits averaged (default 1)")
    serve.add_argument("--no-keyframe-snap", action="store_true", help="keep clip starts exactly centered")
    serve.add_argument("--runtime", choices=("auto", "torch", "openvino", "mxnet"), default="auto",
                       help="what runs the network: auto (default) = torch on CPUs, mxnet on GPUs")
    serve.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default="auto",
                       help="torch precision: auto (default) = int8 where the model directory has "
                            "a checked int8 module (clipwatch quantize) and the CPU has VNNI/AMX, "
                            "else bf16 where the CPU has AMX/AVX512-BF16")
    serve.add_argument("--no-auto-int8", action="store_true",
                       help="never move to OpenVINO or int8 by itself (by default a model served on "
                            "torch fp32/bf16 times OpenVINO on 6 served clips and moves to it when it "
                            "agreed and was 1.1x faster, then calibrates int8 on the clips it serves and "
                            "switches once int8 agreed with it on 99%% of 100 later clips and is faster; "
                            "env CLIPWATCH_AUTO_INT8=off)")
    serve.add_argument("--decode-workers", type=int, default=None,
                       help="decoding processes (default: one per core; 0 = decode in the request thread)")
    serve.add_argument("--decoder", choices=("pyav", "decord"), default="pyav",
                       help="video decoder: pyav (default; FFmpeg, reads TS directly, skips "
                            "unreferenced frames the clip does not show) or decord (GluonCV's)")
    serve.add_argument("--max-batch-clips", type=int, default=4,
                       help="clips of concurrent requests run in one forward, at most (default 4)")
    serve.add_argument("--max-queue", type=int, default=int(os.environ.get("CLIPWATCH_MAX_QUEUE", 16)),
                       help="invocations in flight before answering 429 + Retry-After (default 16, "
                            "env CLIPWATCH_MAX_QUEUE)")
    serve.add_argument("--no-proposals", action="store_true",
                       help="do not propose segments for the reviewer (by default a segment routed to "
                            "review is also classified over sliding windows: inference.presegment)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)
