"""Reviewers standing in for people where the truth is known (synthetic streams): they take the
queue in its order through ``ReviewService``, as the web tool's users do, and answer each clip
with its true label. The retrain loop's benchmark and end-to-end test run on them."""

from __future__ import annotations

from typing import Callable, Optional

from clipwatch.records import ClipAnswer

from .service import LabelsIn, ReviewService


def review_queue(service: ReviewService, truth_of: Callable[[str, int], Optional[str]],
                 reviewer: str = "simulated", limit: int | None = None) -> int:
    """Label pending tasks in queue order with ``truth_of(stream_id, sequence)`` (None: skip the
    task); how many were labelled."""
    done = 0
    while limit is None or done < limit:
        task = service.next_task(reviewer)
        if task is None:
            return done
        label = truth_of(task.stream_id, task.sequence)
        if label is None:
            service.skip(task.task_id, reviewer)
            continue
        service.submit(task.task_id, reviewer, LabelsIn(clip=ClipAnswer(label=label)))
        done += 1
    return done
