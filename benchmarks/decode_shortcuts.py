"""Which H.264 decoding shortcuts make decoding a clip faster without changing what the model
predicts?

``inference.decode.PyAVVideo`` already decodes only the pictures a clip needs (it skips the
unreferenced ones the clip does not show). This benchmark measures what is left on the table,
each shortcut alone and then the passing ones together, against full decoding (PyAVVideo as
served) in the same process, interleaved, over several rounds (the machine is shared: read the
ratios within a round, not the absolute times):

1. skipping H.264's loop filter (deblocking) — libavcodec's ``skip_loop_filter`` (AVDiscard:
   ``noref``, ``bidir``, ``nokey``, ``all``), given through ``codec_context.options`` before the
   decoder opens (PyAV 18 has no attribute for it), and a variant that skips it only while
   decoding the pictures the clip does not show: set between ``decode`` calls with
   ``av_opt_set`` on the open AVCodecContext (ctypes; FFmpeg's frame threads copy the field
   from the user context at every packet, ``update_context_from_user``). The ``verify`` section
   of the output proves the settings take effect (pixels change, and the per-picture switch
   gives the same pixels with frame threads as with one thread);
2. ``flags2 +fast``;
3. the scaler: ``FAST_BILINEAR`` / ``AREA`` / ``POINT`` against the served ``BILINEAR``;
4. threads: ``thread_type`` AUTO / FRAME / SLICE × ``thread_count`` 0 (libav picks) / 1 / 2 for
   one request, and 2 decode-pool workers (``inference.decode_pool.DecodePool``, 1 thread each
   under load) with and without pinning each worker to a core (``os.sched_setaffinity``).

For each variant: decode ms per clip (median over segments × rounds; 10 s 1280×720 30 fps
live-encoder segments as ``benchmarks/harness.py`` renders them), mean absolute pixel difference
to full decoding, and the top-1 agreement with full decoding of

- DeepMind's Kinetics-400 I3D (fp32) on real footage (``clipwatch.footage``, every clip
  re-encoded as a 720p segment; many clip start offsets per segment), and
- the demo model (``models/demo``) on synthetic activity segments (``training.synth``,
  640×360 and 1280×720),

with the model input made exactly as served (``center_crop_clips`` + ``normalize_clips`` with
the model card's input spec). Variants whose frames are bit-identical to full decoding cannot
change a prediction and are not run through the model again. A variant is dropped from the
(costly) Kinetics comparison once it has more disagreements than 0.5% of the target clip count
allows: it has failed.

    PYTHONPATH=. .venv/bin/python benchmarks/decode_shortcuts.py \\
        --out benchmarks/results/decode_shortcuts.json
    PYTHONPATH=. .venv/bin/python benchmarks/decode_shortcuts.py --quick   # ~1-2 min smoke run
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import PATTERNS, SEGMENT, console, progress  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO_MODEL = REPO / "models" / "demo"
TARGET = 0.995


# ------------------------------------------------------------------------------- libav access

class _LibAV:
    """``av_opt_set``/``av_opt_get_int`` on a PyAV codec context's AVCodecContext (ctypes)."""

    def __init__(self):
        import av

        libs = Path(av.__file__).resolve().parent.parent / "av.libs"
        self.avcodec = ctypes.CDLL(glob.glob(str(libs / "libavcodec-*"))[0])
        self.avutil = ctypes.CDLL(glob.glob(str(libs / "libavutil-*"))[0])
        self.avcodec.avcodec_get_class.restype = ctypes.c_void_p
        self.avutil.av_opt_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
        self.avutil.av_opt_get_int.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                               ctypes.POINTER(ctypes.c_int64)]
        self.codec_class = self.avcodec.avcodec_get_class()

    def pointer(self, ctx) -> int:
        """The AVCodecContext* of a PyAV CodecContext: the first field after the object header
        and Cython's vtable pointer (av/codec/context.pxd); checked by its AVClass."""
        ptr = ctypes.c_void_p.from_address(id(ctx) + 24).value
        if not ptr or ctypes.c_void_p.from_address(ptr).value != self.codec_class:
            raise RuntimeError("PyAV's CodecContext layout changed: cannot reach AVCodecContext")
        return ptr

    def set(self, ptr: int, name: str, value: str) -> None:
        if self.avutil.av_opt_set(ptr, name.encode(), value.encode(), 0) < 0:
            raise RuntimeError(f"av_opt_set({name}={value}) failed")

    def get_int(self, ptr: int, name: str) -> int:
        v = ctypes.c_int64()
        self.avutil.av_opt_get_int(ptr, name.encode(), 0, ctypes.byref(v))
        return v.value


_libav: _LibAV | None = None


def libav() -> _LibAV:
    global _libav
    if _libav is None:
        _libav = _LibAV()
    return _libav


# ------------------------------------------------------------------------------- the variants

@dataclass(frozen=True)
class Variant:
    name: str
    skip_loop_filter: str | None = None  # AVDiscard for every picture (codec option)
    slf_unshown: bool = False  # skip the loop filter only on pictures the clip does not show
    fast: bool = False  # flags2 +fast
    interpolation: str = "BILINEAR"
    thread_type: str = "AUTO"
    thread_count: int = 0  # 0: libav picks (all cores), as served for a lone request
    pixels_as: str | None = None  # same pixels as this variant by construction (threads)

    @property
    def changes_decoding(self) -> bool:
        return bool(self.skip_loop_filter or self.slf_unshown or self.fast
                    or self.interpolation != "BILINEAR")


FULL = Variant("full")
SINGLES = [
    Variant("slf_noref", skip_loop_filter="noref"),
    Variant("slf_bidir", skip_loop_filter="bidir"),
    Variant("slf_nokey", skip_loop_filter="nokey"),
    Variant("slf_all", skip_loop_filter="all"),
    Variant("slf_unshown", slf_unshown=True),
    Variant("flags2_fast", fast=True),
    Variant("fast_bilinear", interpolation="FAST_BILINEAR"),
    Variant("area", interpolation="AREA"),
    Variant("point", interpolation="POINT"),
]
THREADS = [
    Variant("auto_1", thread_count=1),
    Variant("auto_2", thread_count=2),
    Variant("frame_0", thread_type="FRAME"),
    Variant("frame_2", thread_type="FRAME", thread_count=2),
    Variant("slice_0", thread_type="SLICE"),
    Variant("slice_2", thread_type="SLICE", thread_count=2),
]


def combined(passing: list[Variant], name: str = "combined") -> Variant:
    """The shortcuts of ``passing`` together (the strongest loop-filter skip among them)."""
    order = [None, "noref", "bidir", "nokey", "all"]
    slf = max((v.skip_loop_filter for v in passing), key=lambda s: order.index(s), default=None)
    interp = next((v.interpolation for v in passing if v.interpolation != "BILINEAR"), "BILINEAR")
    return Variant(name, skip_loop_filter=slf,
                   slf_unshown=any(v.slf_unshown for v in passing) and slf != "all",
                   fast=any(v.fast for v in passing), interpolation=interp)


def open_video(data: bytes, resize, variant: Variant):
    from inference.decode import PyAVVideo

    class ShortcutVideo(PyAVVideo):
        """PyAVVideo as served, with the variant's settings applied to its codec context
        before the decoder opens, its scaler, and (``slf_unshown``) the loop filter switched
        per picture."""

        def _keep(self, decoded, want, out):
            for frame in decoded:
                index = self._rank.get(frame.pts)
                if index in want:
                    out[index] = self._reformatter.reformat(
                        frame, width=self._size[0], height=self._size[1], format="rgb24",
                        interpolation=variant.interpolation).to_ndarray()

        def frames(self, clip):
            # PyAVVideo.frames' loop, restated with the loop filter switched per picture: the
            # served loop has no hook for it, and the variant was not adopted (README "Speed")
            if not variant.slf_unshown:
                return super().frames(clip)
            from clipwatch.errors import UndecodableVideo

            lib, ptr = libav(), libav().pointer(self._ctx)
            want, out = set(clip), {}
            keys = [i for i, p in enumerate(self._packets) if p.is_keyframe and self._display[i] <= clip[0]]
            start = max(keys, key=lambda i: self._display[i]) if keys else 0
            end = max(i for i, d in enumerate(self._display) if d <= clip[-1])
            if self._used:
                self._ctx.flush_buffers()
            self._used = True
            skipping = None
            for pos in range(start, end + 1):
                shown = self._display[pos] in want
                if not shown and self._disposable(self._packets[pos]):
                    self.skipped += 1
                    continue
                if skipping != (not shown):
                    skipping = not shown
                    lib.set(ptr, "skip_loop_filter", "all" if skipping else "default")
                self.decoded += 1
                self._keep(self._ctx.decode(self._packets[pos]), want, out)
            self._keep(self._ctx.decode(None), want, out)
            missing = sorted(want - out.keys())
            if missing:
                raise UndecodableVideo(f"could not decode frames {missing[0]}-{missing[-1]}")
            return np.stack([out[i] for i in clip])

    video = ShortcutVideo(data, resize, variant.thread_count)
    ctx = video._ctx
    ctx.thread_type = variant.thread_type
    ctx.thread_count = variant.thread_count
    options = {}
    if variant.skip_loop_filter:
        options["skip_loop_filter"] = variant.skip_loop_filter
    if variant.fast:
        options["flags2"] = "+fast"
    if options:
        ctx.options = options
    return video


def decode(data: bytes, sampler, resize, variant: Variant, clips: list[list[int]] | None = None):
    """As ``inference.decode.decode_clips`` (one fresh decoder per request), with ``variant``;
    ``clips`` gives the frame indices instead of the sampler. (T…) uint8 frames per clip."""
    video = open_video(data, resize, variant)
    try:
        if clips is None:
            s = sampler.for_rate(video.fps)
            keyframes = video.keyframes() if s.snap_to_keyframe else ()
            clips = s.indices(video.num_frames, keyframes)
        return np.stack([video.frames(c) for c in clips])
    finally:
        video.close()


def pixel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ------------------------------------------------------------------------------- segments

def timing_segments(workdir: Path, count: int) -> list[bytes]:
    from clipwatch.testmedia import render_segment

    out = []
    with progress() as bar:
        task = bar.add_task("rendering 10 s 720p timing segments (harness.SEGMENT)", total=count)
        for i in range(count):
            path = workdir / f"seg_{i:03d}.ts"  # deterministic: kept between runs
            if not path.is_file():
                render_segment(path, seed=i, pattern=PATTERNS[i % len(PATTERNS)], **SEGMENT)
            out.append(path.read_bytes())
            bar.advance(task)
    return out


def footage_segments(workdir: Path) -> dict[str, bytes]:
    from clipwatch import footage

    out = {}
    with progress() as bar:
        task = bar.add_task("re-encoding real footage as 720p segments", total=len(footage.CLIPS))
        for name in footage.CLIPS:
            out[name] = footage.segment(name, workdir / "footage" / f"{name}.ts", size=(1280, 720)).read_bytes()
            bar.advance(task)
    return out


def synthetic_segments(workdir: Path, count: int, seed: int) -> list[tuple[str, bytes]]:
    """Segments of three 2 s activities each, half 640×360, half 1280×720."""
    from training.synth import ACTIVITIES, write_activity_segment

    rng = np.random.default_rng(seed)
    out = []
    with progress() as bar:
        task = bar.add_task("rendering synthetic activity segments", total=count)
        for i in range(count):
            size = (640, 360) if i % 2 == 0 else (1280, 720)
            acts = [ACTIVITIES[(3 * i + j) % len(ACTIVITIES)] for j in range(3)]
            path = workdir / "synth" / f"act_{i:03d}.ts"
            write_activity_segment(path, [(a, 2.0) for a in acts], seed=int(rng.integers(1 << 30)),
                                   size=size, fps=30, cuts=bool(i % 3 == 2))
            out.append((f"{size[0]}x{size[1]}:{'+'.join(acts)}", path.read_bytes()))
            bar.advance(task)
    return out


def clip_starts(num_frames: int, span: int, step: int) -> list[int]:
    return list(range(0, num_frames - span + 1, step))


# ------------------------------------------------------------------------------- timing

def measure_decode_times(segments: list[bytes], specs: dict, variants_of: dict, rounds: int) -> dict:
    """Per spec and variant, ms per request (fresh decoder, one clip as served), interleaved:
    each round visits the segments in turn and, per segment, every variant in a rotated order."""
    times = {s: {v.name: [] for v in variants_of[s]} for s in specs}
    diffs = {s: {v.name: [] for v in variants_of[s]} for s in specs}
    with progress() as bar:
        task = bar.add_task("timing decode variants",
                            total=rounds * len(segments) * sum(len(v) for v in variants_of.values()))
        for r in range(rounds):
            for i, data in enumerate(segments):
                for spec_name, spec in specs.items():
                    sampler = spec.sampler(1, True)
                    variants = variants_of[spec_name]
                    shift = (r * len(segments) + i) % len(variants)
                    order = variants[shift:] + variants[:shift]
                    frames = {}
                    for v in order:
                        t = time.perf_counter()
                        frames[v.name] = decode(data, sampler, spec.resize, v)
                        times[spec_name][v.name].append((time.perf_counter() - t) * 1000.0)
                        bar.advance(task)
                    if r == 0:
                        for v in variants:
                            diffs[spec_name][v.name].append(pixel_diff(frames[v.name], frames["full"]))
    out = {}
    for spec_name in specs:
        full = np.asarray(times[spec_name]["full"])
        rows = {}
        for v in variants_of[spec_name]:
            t = np.asarray(times[spec_name][v.name])
            # the ratio to full decoding of the same segment in the same round, then its median
            ratio = t / full
            rows[v.name] = {"median_ms": round(float(np.median(t)), 1),
                            "p10_ms": round(float(np.percentile(t, 10)), 1),
                            "p90_ms": round(float(np.percentile(t, 90)), 1),
                            "ratio_vs_full": round(float(np.median(ratio)), 3),
                            "ratio_p10_p90": [round(float(np.percentile(ratio, 10)), 3),
                                              round(float(np.percentile(ratio, 90)), 3)],
                            "mean_pixel_diff": round(float(np.mean(diffs[spec_name][v.name])), 4),
                            "samples": len(t)}
        out[spec_name] = rows
    return out


def measure_pool(segments: list[bytes], spec, rounds: int) -> dict:
    """``DecodePool`` with 2 workers: single-request latency (one request in flight: the worker
    decodes with libav's threads) and throughput with 2 callers (1 thread each), with the
    workers free to move, or pinned one per core; the modes alternate every round."""
    from inference.decode_pool import DecodePool

    cores = sorted(os.sched_getaffinity(0))
    sampler = spec.sampler(1, True)
    pool = DecodePool(2)
    res = {m: {"latency_ms": [], "throughput_clips_s": []} for m in ("unpinned", "pinned")}
    try:
        pool.warm_up()
        with progress() as bar:
            task = bar.add_task("decode pool: latency + 2-caller throughput, pinned / unpinned",
                                total=rounds * 2)
            for r in range(rounds):
                for mode in (("unpinned", "pinned") if r % 2 == 0 else ("pinned", "unpinned")):
                    for k, pid in enumerate(sorted(pool.pids())):
                        os.sched_setaffinity(pid, {cores[k % len(cores)]} if mode == "pinned" else set(cores))
                    for data in segments:
                        t = time.perf_counter()
                        pool.decode(data, sampler, spec.resize, spec.crop)
                        res[mode]["latency_ms"].append((time.perf_counter() - t) * 1000.0)
                    work = list(segments) * 2
                    lock = threading.Lock()

                    def caller():
                        while True:
                            with lock:
                                if not work:
                                    return
                                data = work.pop()
                            pool.decode(data, sampler, spec.resize, spec.crop)

                    t = time.perf_counter()
                    threads = [threading.Thread(target=caller) for _ in range(2)]
                    for th in threads:
                        th.start()
                    for th in threads:
                        th.join()
                    res[mode]["throughput_clips_s"].append(2 * len(segments) / (time.perf_counter() - t))
                    bar.advance(task)
    finally:
        pool.close()
    out = {}
    for mode, r in res.items():
        out[mode] = {"latency_median_ms": round(float(np.median(r["latency_ms"])), 1),
                     "latency_p90_ms": round(float(np.percentile(r["latency_ms"], 90)), 1),
                     "throughput_clips_s_per_round": [round(x, 2) for x in r["throughput_clips_s"]],
                     "throughput_median_clips_s": round(float(np.median(r["throughput_clips_s"])), 2)}
    out["pinned_vs_unpinned_throughput"] = round(
        out["pinned"]["throughput_median_clips_s"] / out["unpinned"]["throughput_median_clips_s"], 3)
    return out


# ------------------------------------------------------------------------------- verification

def verify_settings(data: bytes, spec) -> dict:
    """Proof the loop-filter settings act: pixel differences, the option read back from the
    open decoder, and the per-picture switch giving the same pixels with 1 thread and with
    libav's frame threads (the frame threads copy the user context at each packet)."""
    sampler = spec.sampler(1, True)
    full = decode(data, sampler, spec.resize, FULL)
    out = {}
    for v in [SINGLES[3], SINGLES[4]]:
        threaded = decode(data, sampler, spec.resize, v)
        single = decode(data, sampler, spec.resize, replace(v, thread_count=1))
        out[v.name] = {"diff_vs_full_frame_threads": round(pixel_diff(threaded, full), 4),
                       "diff_vs_full_1_thread": round(pixel_diff(single, full), 4),
                       "frame_threads_equal_1_thread": bool(np.array_equal(threaded, single))}
    video = open_video(data, spec.resize, SINGLES[3])
    video.frames(sampler.indices(video.num_frames)[0])
    out["slf_all"]["skip_loop_filter_read_back"] = libav().get_int(libav().pointer(video._ctx), "skip_loop_filter")
    out["slf_all"]["thread_count_in_use"] = video._ctx.thread_count
    video.close()
    out["note"] = "skip_loop_filter read back 48 = AVDISCARD_ALL"
    return out


# ------------------------------------------------------------------------------- agreement

def agreement(classifier, clips: list[tuple[bytes, list[int]]], variants: list[Variant], desc: str,
              budget_s: float, target_n: int, batch_size: int = 8) -> dict:
    """Top-1 of ``classifier`` on each variant's frames against full decoding's, clip by clip.
    Bit-identical frames are not run again (they agree by construction); a variant with more
    disagreements than ``target_n`` × 0.5% allows has failed and is dropped; stops at the time
    budget."""
    from inference.preprocess import center_crop_clips, normalize_clips

    s = classifier.card.input
    allowed = int((1 - TARGET) * target_n + 1e-9)
    stats = {v.name: {"n": 0, "k_differ": 0, "identical_frames": 0, "pixel_diffs": [], "dropped_at": None,
                      "differ": []} for v in variants}
    alive = list(variants)
    start = time.monotonic()
    done = 0
    with progress() as bar:
        task = bar.add_task(desc, total=len(clips))
        for ci, (data, clip) in enumerate(clips):
            if time.monotonic() - start > budget_s or not alive:
                break
            frames = {"full": decode(data, None, s.resize, FULL, [clip])}
            for v in alive:
                frames[v.name] = decode(data, None, s.resize, v, [clip])
            inputs, key_of = [], {}
            for name, f in frames.items():
                same = next((k for k, g in frames.items() if k in key_of and np.array_equal(f, g)), None)
                if same is not None:
                    key_of[name] = key_of[same]
                    continue
                key_of[name] = len(inputs)
                inputs.append(normalize_clips(center_crop_clips(f, s.crop), s.crop, s.mean, s.std))
            batch = np.concatenate(inputs)
            top1 = np.concatenate([classifier.logits(batch[i:i + batch_size]).argmax(1)
                                   for i in range(0, len(batch), batch_size)])
            ref = top1[key_of["full"]]
            for v in list(alive):
                st = stats[v.name]
                st["n"] += 1
                st["identical_frames"] += key_of[v.name] == key_of["full"]
                st["pixel_diffs"].append(pixel_diff(frames[v.name], frames["full"]))
                if top1[key_of[v.name]] != ref:
                    st["k_differ"] += 1
                    st["differ"].append({"clip": ci, "full": classifier.classes[int(ref)],
                                         "variant": classifier.classes[int(top1[key_of[v.name]])]})
                    if st["k_differ"] > allowed:
                        st["dropped_at"] = st["n"]
                        alive.remove(v)
            done += 1
            bar.advance(task)
    out = {}
    for name, st in stats.items():
        n, k = st["n"], st["k_differ"]
        out[name] = {"n": n, "k_differ": k, "agreement": round(1 - k / n, 4) if n else None,
                     "identical_frames": int(st["identical_frames"]),
                     "mean_pixel_diff": round(float(np.mean(st["pixel_diffs"])), 4) if n else None,
                     "dropped_at": st["dropped_at"], "disagreements": st["differ"][:10]}
        # passes: at most target_n × 0.5% disagreements and ≥ 99.5% agreement on what was seen
        out[name]["passes"] = bool(n and k <= allowed and 1 - k / n >= TARGET)
    out["_clips_compared"] = done
    out["_clips_available"] = len(clips)
    out["_allowed_k_at_target"] = allowed
    out["_seconds"] = round(time.monotonic() - start, 1)
    return out


def interleave(groups: list[list]) -> list:
    """Round-robin over groups, so a time-budget cut keeps every source represented."""
    out, i = [], 0
    while any(i < len(g) for g in groups):
        out += [g[i] for g in groups if i < len(g)]
        i += 1
    return out


# ------------------------------------------------------------------------------- plot

def plot(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = list(result["decode_ms"])
    fig, axes = plt.subplots(1, len(specs), figsize=(7 * len(specs), 7), squeeze=False)
    for ax, spec in zip(axes[0], specs):
        rows = result["decode_ms"][spec]
        names = list(rows)
        med = [rows[n]["median_ms"] for n in names]
        lo = [rows[n]["median_ms"] - rows[n]["p10_ms"] for n in names]
        hi = [rows[n]["p90_ms"] - rows[n]["median_ms"] for n in names]
        colors = []
        labels = []
        for n in names:
            k = result["kinetics_agreement"].get(n, {})
            d = result["demo_agreement"].get(n, {})
            ok = [a.get("passes") for a in (k, d) if a]
            colors.append("tab:gray" if n == "full" else "tab:green" if ok and all(ok) else
                          "tab:red" if ok and not all(ok) else "tab:blue")
            ktxt = f"K {k['n'] - k['k_differ']}/{k['n']}" if k.get("n") else "K -"
            dtxt = f"D {d['n'] - d['k_differ']}/{d['n']}" if d.get("n") else "D -"
            labels.append(f"×{rows[n]['ratio_vs_full']:.2f}  {ktxt}  {dtxt}")
        y = np.arange(len(names))
        ax.barh(y, med, xerr=[lo, hi], color=colors, alpha=0.8)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        for yi, m, lab in zip(y, med, labels):
            ax.text(m * 1.02 + 5, yi, lab, va="center", fontsize=8)
        ax.set_xlim(0, max(med) * 1.9)
        ax.set_xlabel("decode ms per clip (median, p10-p90 bars)")
        ax.set_title(f"{spec}\nK/D: top-1 same as full decode (Kinetics I3D / demo model)", fontsize=9)
    fig.suptitle("Decoding shortcuts: green passes >= 99.5% on both models, red fails, blue no model check")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / ".cache" / "benchmarks" / "decode_shortcuts.json")
    p.add_argument("--quick", action="store_true", help="~1-2 minute smoke run")
    p.add_argument("--segments", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kinetics-minutes", type=float, default=12.0)
    p.add_argument("--kinetics-step", type=int, default=6, help="frames between clip starts")
    p.add_argument("--demo-segments", type=int, default=16)
    p.add_argument("--demo-step", type=int, default=12)
    p.add_argument("--target-clips", type=int, default=200)
    p.add_argument("--kinetics-variants", default="slf_all,slf_unshown,flags2_fast,combined",
                   help="variants checked with the (slow, ~3-5 s a clip here) Kinetics I3D")
    p.add_argument("--combined", default="slf_all,flags2_fast",
                   help="the single variants combined (comma-separated names)")
    args = p.parse_args(argv)
    if args.quick:
        args.segments, args.rounds, args.kinetics_minutes = 2, 1, 0.2
        args.demo_segments, args.kinetics_step, args.demo_step = 1, 60, 30

    from inference.model import InputSpec, ModelCard, load_classifier
    from inference.model_fetch import fetch

    kinetics_dir = fetch("kinetics400", progress=False)
    kinetics_spec = ModelCard.model_validate_json(
        (Path(kinetics_dir) / "model.json").read_text()).input
    specs = {"r50_default(32x2,340x256)": InputSpec(),
             "kinetics(32x1@25fps,short256)": kinetics_spec}
    by_name = {v.name: v for v in SINGLES}
    combo = combined([by_name[n] for n in args.combined.split(",") if n], "combined")
    decode_variants = [FULL, *SINGLES, combo]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": {"cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
                          "loadavg_start": os.getloadavg()},
              "quick": args.quick, "segment": SEGMENT, "patterns": PATTERNS,
              "variants": {v.name: asdict(v) for v in decode_variants + THREADS}}
    import av

    result["pyav"] = {"version": av.__version__, "libavcodec": av.library_versions["libavcodec"]}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clipwatch-shortcuts-") as tmp:
        tmp = Path(tmp)
        segments = timing_segments(REPO / ".cache" / "benchmarks" / "decode_shortcuts_segments", args.segments)
        result["verify"] = verify_settings(segments[0], specs["r50_default(32x2,340x256)"])
        console.print_json(json.dumps(result["verify"]))
        first = next(iter(specs))
        result["decode_ms"] = measure_decode_times(
            segments, specs, {s: decode_variants + THREADS if s == first else decode_variants for s in specs},
            args.rounds)
        result["pool"] = measure_pool(segments, specs["r50_default(32x2,340x256)"], max(2, args.rounds))
        console.print_json(json.dumps({"pool": result["pool"]}))
        model_variants = [v for v in decode_variants[1:] if v.changes_decoding]

        # demo model on synthetic activity segments
        demo = load_classifier(DEMO_MODEL, precision="fp32")
        ds = demo.card.input
        synth = synthetic_segments(tmp, args.demo_segments, seed=20261123)
        span = (ds.frames - 1) * ds.stride + 1
        groups = []
        for _, data in synth:
            from inference.decode import PyAVVideo

            video = PyAVVideo(data)
            n = video.num_frames
            video.close()
            groups.append([(data, list(range(s, s + span, ds.stride))) for s in clip_starts(n, span, args.demo_step)])
        demo_clips = interleave(groups)
        result["demo_agreement"] = agreement(demo, demo_clips, model_variants,
                                             "demo model on synthetic segments", 1e9, args.target_clips)
        result["demo_agreement"]["_segments"] = [name for name, _ in synth]

        # DeepMind's Kinetics-400 I3D on real footage
        kin = load_classifier(kinetics_dir, precision="fp32")
        ks = kin.card.input
        groups = []
        for name, data in footage_segments(tmp).items():
            from inference.decode import PyAVVideo

            video = PyAVVideo(data)
            n, fps = video.num_frames, video.fps
            video.close()
            stride = ks.sampler().for_rate(fps).stride
            kspan = (ks.frames - 1) * stride + 1
            groups.append([(data, list(range(s, s + kspan, stride))) for s in clip_starts(n, kspan, args.kinetics_step)])
        rng = np.random.default_rng(0)
        for g in groups:
            rng.shuffle(g)
        kin_clips = interleave(groups)
        wanted = args.kinetics_variants.split(",")
        result["kinetics_variants"] = wanted
        result["kinetics_agreement"] = agreement(kin, kin_clips, [v for v in model_variants if v.name in wanted],
                                                 "Kinetics-400 I3D fp32 on real footage",
                                                 args.kinetics_minutes * 60, args.target_clips)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["machine"]["loadavg_end"] = os.getloadavg()
    summary = {}
    for v in decode_variants + THREADS:
        row = {spec: {k: result["decode_ms"][spec][v.name][k] for k in ("median_ms", "ratio_vs_full", "mean_pixel_diff")}
               for spec in specs if v.name in result["decode_ms"][spec]}
        for key in ("kinetics_agreement", "demo_agreement"):
            a = result[key].get(v.name)
            if a:
                row[key] = {k: a[k] for k in ("n", "k_differ", "agreement", "passes")}
        if v.changes_decoding:
            row["passes_both"] = bool(row.get("kinetics_agreement", {}).get("passes")
                                      and row.get("demo_agreement", {}).get("passes"))
        summary[v.name] = row
    result["summary"] = summary
    for spec in specs:
        full = result["decode_ms"][spec]["full"]
        result.setdefault("baseline_spread", {})[spec] = {
            k: full[k] for k in ("median_ms", "p10_ms", "p90_ms", "samples")}
    args.out.write_text(json.dumps(result, indent=1, default=float))
    plot(result, args.out.with_suffix(".png"))
    console.print_json(json.dumps(summary, default=float))
    console.print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
