"""The demo's hand-off to people: the segments it flagged, and the review tool to label them.

A newcomer who has just watched segments go to review should be one command (or one URL) away
from labelling them. So after the streams, the demo makes a reviewer for its own store — a users
file with a fresh token, and the label list of the models that made the predictions — and
either serves the review tool itself (``clipwatch demo --review``, until Ctrl-C) or prints the
``clipwatch review`` command that serves it, which works as printed from the same folder.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

REVIEWER = "demo"


@dataclass(frozen=True)
class ReviewHandoff:
    """What a person needs to open the demo's review queue."""
    store_url: str
    users_file: Path
    labels_file: Path
    allowed_dir: Path
    token: str
    pending: int

    def command(self, port: int) -> str:
        """The `clipwatch review` line that serves this store, runnable as printed from the
        directory the demo ran in."""
        return shlex.join([_clipwatch(), "review", "--store", self.store_url, "--users", str(self.users_file),
                           "--labels", str(self.labels_file), "--allow-dir", str(self.allowed_dir),
                           "--port", str(port)])


def _clipwatch() -> str:
    """How to call clipwatch from here: the venv's script when that is what runs (``make demo``
    runs ``.venv/bin/clipwatch``, which need not be on PATH), else the module."""
    script = Path(sys.executable).parent / "clipwatch"
    if script.is_file():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m clipwatch.cli"


def prepare(out_dir: Path, store, store_url: str, label_sources: list[Path]) -> ReviewHandoff:
    """A reviewer (role admin, so the audit pages open too) with a fresh token in
    ``out_dir/review-users.json``, and the labels reviewers choose from: every class of the
    models whose predictions are in the store, each once, in the models' order."""
    from review.auth import UsersFile

    users = out_dir / "review-users.json"
    users.unlink(missing_ok=True)  # a fresh token per demo run; the old one named an old store
    token = UsersFile.add(users, REVIEWER, "admin")
    labels: list[str] = []
    for source in label_sources:
        labels += [c for c in (line.strip() for line in source.read_text().splitlines()) if c and c not in labels]
    labels_file = out_dir / "review-labels.txt"
    labels_file.write_text("\n".join(labels) + "\n")
    pending = len(store.review_tasks("pending", limit=10_000))
    return ReviewHandoff(store_url, users, labels_file, out_dir, token, pending)


def serve(handoff: ReviewHandoff, port: int, console) -> None:
    """Serve the review tool on the demo's store until Ctrl-C."""
    import time

    from clipwatch.blobs import SegmentReader
    from inference.server import BackgroundServer
    from review.app import create_app

    labels = [c for c in handoff.labels_file.read_text().splitlines() if c]
    app = create_app(handoff.store_url, handoff.users_file, labels,
                     reader=SegmentReader(allowed_dirs=(handoff.allowed_dir.resolve(),)))
    with BackgroundServer(app, port=port) as server:
        console.print(f"[bold]review tool[/]: {server.url}/login · token [bold]{handoff.token}[/] "
                      f"(user {REVIEWER!r}) · Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def announce(handoff: ReviewHandoff, port: int, console) -> None:
    """Tell the person at the terminal where the human loop goes on."""
    console.print(f"[bold]{handoff.pending} segment(s) went to human review.[/] Label them in the review tool:")
    console.print(f"  {handoff.command(port)}", soft_wrap=True, highlight=False, markup=False)
    console.print(f"  then open http://127.0.0.1:{port}/login and paste the token "
                  f"{handoff.token} (user {REVIEWER!r}; `clipwatch demo --review` serves it directly)",
                  soft_wrap=True, highlight=False, markup=False)
