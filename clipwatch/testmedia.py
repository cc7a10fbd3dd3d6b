"""Real H.264 MPEG-TS segments rendered by ffmpeg from its built-in sources, shaped like a live
encoder's output (10 s, 1280×720, 30 fps, a keyframe every 2 s), for tests, benchmarks and the
demo. No downloads: everything is made here."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise RuntimeError("ffmpeg is not installed: run `make test` or `make demo`, which install it")
    return exe


def render_segment(out: str | Path, seconds: float = 10.0, size: tuple[int, int] = (1280, 720),
                   fps: int = 30, gop: int = 60, pattern: str = "testsrc2", seed: int = 0,
                   audio: bool = True) -> Path:
    """An HLS-style segment: H.264 (yuv420p, fixed GOP, no scene-cut keyframes) + AAC in TS.
    ``pattern`` is an ffmpeg lavfi video source (testsrc2, mandelbrot, life, ...); ``seed``
    shifts its start so segments differ."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    src = f"{pattern}=size={w}x{h}:rate={fps}"
    cmd = [ffmpeg(), "-loglevel", "error", "-y", "-ss", str(seed % 60), "-f", "lavfi", "-i", src]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={220 + 20 * (seed % 20)}:sample_rate=48000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    cmd += ["-c:a", "aac", "-b:a", "64k"] if audio else []
    subprocess.run(cmd + ["-f", "mpegts", str(out)], check=True)
    return out


def render_audio_only(out: str | Path, seconds: float = 5.0) -> Path:
    out = Path(out)
    subprocess.run([ffmpeg(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-t", str(seconds), "-c:a", "aac",
                    "-f", "mpegts", str(out)], check=True)
    return out
