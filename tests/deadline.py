"""Waiting in tests, always with a deadline: a lost message or a hung thread fails the test with
what it was waiting for, instead of hanging CI (pytest-timeout's per-test limit is only the
backstop for a wait this module does not cover)."""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Callable, Optional

DEFAULT_S = 120.0


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = DEFAULT_S,
               interval_s: float = 0.05, alive: Optional[Callable[[], object]] = None) -> None:
    """Poll ``condition`` until true; fail after ``timeout_s`` naming ``what``. ``alive``, when
    given, is checked on each round (e.g. an assertion that the processes still run)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def joined(thread: threading.Thread, what: str, timeout_s: float = DEFAULT_S) -> None:
    thread.join(timeout_s)
    if thread.is_alive():
        raise AssertionError(f"{what} still running after {timeout_s:.0f} s")


def set_within(event: threading.Event, what: str, timeout_s: float = DEFAULT_S) -> None:
    if not event.wait(timeout_s):
        raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def exited(proc: subprocess.Popen, what: str, timeout_s: float = DEFAULT_S) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{what} did not exit within {timeout_s:.0f} s") from None
