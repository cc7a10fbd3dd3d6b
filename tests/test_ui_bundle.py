"""The committed review-tool bundle was built from the committed sources: `make test` and `make
demo` on a fresh clone then need no node (their `ui-current` step compares this same hash)."""

import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sources_hash() -> str:
    """sha256 of the sources in the Makefile's UI_SOURCES order (package files, then src/*.js
    sorted byte-wise), as `cat … | sha256sum` computes it."""
    ui = ROOT / "review" / "ui"
    files = [ui / "package.json", ui / "package-lock.json", *sorted((ui / "src").glob("*.js"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def test_the_committed_bundle_matches_its_sources():
    recorded = (ROOT / "review" / "static" / "dist" / "sources.sha256").read_text().strip()
    assert recorded == sources_hash(), "review/ui changed: run `make ui` and commit the bundle"
    for name in ("clip.js", "queue.js", "operator.js"):
        assert (ROOT / "review" / "static" / "dist" / name).stat().st_size > 0
