"""What a reviewer has to do to turn a clip's starting point into the true segments: the
simulated reviewer behind the pre-segmentation effort table (benchmarks/presegment_effort.py).

An edit is one action: drawing a segment (one drag), setting one boundary to its frame,
changing one label, deleting one segment, accepting the proposals. From scratch, every true
segment is drawn, each of its boundaries inside the clip is then set to its frame (a drag is
never frame-exact), and its label changed unless it is the default the page gives a new segment
(the model's label for the clip). From the
model's proposals, the reviewer accepts them all (one key), then fixes them: a proposal that
overlaps a true segment by IoU ≥ 0.5 is kept (matched one to one, best overlap first), each of
its inner boundaries more than ``tolerance`` frames from the truth is moved, its label is
changed if wrong; a proposal matching nothing is deleted; a true segment nothing matches is
drawn. The boundary error is measured on the true inner boundaries (the clip's own start and
end are where both sides put them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence


@dataclass(frozen=True)
class Span:
    start: float  # seconds
    end: float
    label: str


@dataclass
class Effort:
    accepts: int = 0
    drawn: int = 0
    boundary_moves: int = 0
    label_changes: int = 0
    deleted: int = 0
    boundary_error_frames: list[float] | None = None  # of the proposals' inner boundaries, matched ones

    @property
    def edits(self) -> int:
        return self.accepts + self.drawn + self.boundary_moves + self.label_changes + self.deleted

    def as_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "boundary_error_frames"}, "edits": self.edits}


def _iou(a: Span, b: Span) -> float:
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = max(a.end, b.end) - min(a.start, b.start)
    return inter / union if union > 0 else 0.0


def from_scratch(truth: Sequence[Span], default_label: str, duration: float, fps: float) -> Effort:
    edge = 0.5 / fps
    inner = sum(edge <= x <= duration - edge for t in truth for x in (t.start, t.end))
    return Effort(drawn=len(truth), boundary_moves=inner,
                  label_changes=sum(t.label != default_label for t in truth))


def from_proposals(truth: Sequence[Span], proposals: Sequence[Span], fps: float, duration: float,
                   default_label: str, tolerance: int = 2) -> Effort:
    if not proposals:
        return from_scratch(truth, default_label, duration, fps)
    pairs = sorted(((_iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(proposals)),
                   reverse=True)
    matched: dict[int, int] = {}
    used: set[int] = set()
    for iou, i, j in pairs:
        if iou >= 0.5 and i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    effort = Effort(accepts=1, boundary_error_frames=[])
    edge = 0.5 / fps  # a boundary this close to the clip's start or end is the clip's own
    for i, t in enumerate(truth):
        if i not in matched:
            drawn = from_scratch([t], default_label, duration, fps)
            effort.drawn += drawn.drawn
            effort.boundary_moves += drawn.boundary_moves
            effort.label_changes += drawn.label_changes
            continue
        p = proposals[matched[i]]
        for want, got in ((t.start, p.start), (t.end, p.end)):
            error = abs(want - got) * fps
            if edge <= want <= duration - edge:
                effort.boundary_error_frames.append(error)
            effort.boundary_moves += error > tolerance + 0.05  # times are kept to the millisecond
        effort.label_changes += p.label != t.label
    effort.deleted = len(proposals) - len(used)
    return effort
