"""The fast path without a ritual: a served model directory gets a faster runtime and a checked
int8 module by itself, from the segments it serves.

Most model directories a user brings (and every one ``train`` writes before ``clipwatch
quantize``) would otherwise run on torch at their safe precision (fp32, or bf16 on AMX) forever.
While the endpoint serves on that precision, ``AutoInt8`` (one per loaded model):

0. **chooses the runtime**: the first ``runtime_clips`` distinct clips it serves are run again on
   OpenVINO at the same precision and timed beside torch's forwards; OpenVINO serves from then
   on when it agreed on every one and was ``runtime_min_speedup`` faster (which runtime wins
   depends on the network and the CPU: README "Speed");
1. **calibrates**: the next ``calibration_clips`` distinct clips are observed by the int8 calibration
   (``inference.quantize``), one clip per forward, each forward taking the model's lock so live
   requests interleave with it instead of sharing the cores;
2. **checks**: the clips served after those are run again in int8, and their top-1 compared
   with what was served (the safe precision's answer), ``check_clips`` distinct ones: a
   segment served again counts once, or a load test replaying a handful would pass it;
3. **switches** only when the top-1 agreed on at least ``MIN_AGREEMENT`` of the checked clips
   and int8 measured faster per clip than the forwards it replaces. Until then every answer is
   the safe precision's: predictions never change class while it learns.

Both outcomes are cached under ``$CLIPWATCH_CACHE/int8/<key>`` (or ``$CLIPWATCH_INT8_CACHE``),
keyed by the graph, the weights, the clip shape, the engine, the torch version and the CPU's
int8 and bf16 instructions: the next start serves the chosen runtime and int8 at once, or, after
a failed check, does not try again beyond ``attempts``. A cached module that does not load is
ignored, removed and calibrated again. ``/ping`` and ``clipwatch_auto_int8`` say which
precision serves and why; ``CLIPWATCH_AUTO_INT8=off`` (``clipwatch serve --no-auto-int8``)
turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from clipwatch import metrics
from clipwatch.config import AutoInt8Settings
from clipwatch.records import utc_now

from . import quantize
from .runtime import importable

log = logging.getLogger("clipwatch.int8")

RUNTIME_FILE = "runtime.json"
LEARNING = ("choosing", "calibrating", "checking")  # states in which the served clips are offered


class Outcome(BaseModel):
    """What one model's calibration came to (``record.json`` in its cache folder)."""

    passed: bool
    reason: str
    int8: quantize.Int8Record | None = None
    reference: str = ""  # the backend int8 was checked against, e.g. torch-fp32
    speedup: float = 0.0  # safe ms per clip / int8 ms per clip, medians over the checked clips
    attempts: int = 1
    created_at: str = ""


class RuntimeChoice(BaseModel):
    """Which runtime serves one model's safe precision on this machine (``runtime.json``)."""

    runtime: str  # torch | openvino
    reason: str
    speedup: float = 0.0  # OpenVINO's speed against torch's: medians over the timed clips
    created_at: str = ""


def default_cache_dir() -> Path:
    """``$CLIPWATCH_INT8_CACHE``, else ``int8/`` in the user's clipwatch cache."""
    from clipwatch.registry import cache_home

    return Path(os.environ.get("CLIPWATCH_INT8_CACHE") or cache_home() / "int8")


class Int8Cache:
    """``root/<key>/``: ``runtime.json`` (a ``RuntimeChoice``), ``record.json`` (an ``Outcome``)
    and, when it passed, the module."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(classifier) -> str:
        """The classifier's graph and weights, its clip shape, the engine and torch version; a
        module calibrated for another CPU's int8 instructions (reduce_range), or a runtime
        timed at another safe precision, is not reused."""
        import torch

        from .runtime import cpu_has_native_bf16, files_hash

        return files_hash(classifier.directory, (classifier.card.input.clip_shape(), quantize.ENGINE,
                                                 torch.__version__, quantize.cpu_has_int8_dot_product(),
                                                 cpu_has_native_bf16()))

    def runtime_choice(self, key: str) -> RuntimeChoice | None:
        try:
            return RuntimeChoice.model_validate_json((self.root / key / RUNTIME_FILE).read_text())
        except (OSError, ValueError):
            return None

    def save_runtime_choice(self, key: str, choice: RuntimeChoice) -> None:
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{RUNTIME_FILE}.{threading.get_ident()}"
        tmp.write_text(choice.model_dump_json(indent=1) + "\n")
        tmp.replace(folder / RUNTIME_FILE)

    def outcome(self, key: str) -> Outcome | None:
        try:
            return Outcome.model_validate_json((self.root / key / "record.json").read_text())
        except (OSError, ValueError):
            return None

    def module(self, key: str):
        """The cached module, or None when it is missing or does not load (then removed)."""
        import torch

        path = self.root / key / quantize.INT8_FILE
        try:
            quantize._use_engine()
            return torch.jit.load(str(path)).eval()
        except Exception as exc:  # noqa: BLE001 -- truncated, corrupt, another torch's format
            log.warning("ignoring the cached int8 module %s (%s: %s); calibrating again",
                        path, exc.__class__.__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            shutil.rmtree(self.root / key, ignore_errors=True)
            return None

    def save(self, key: str, outcome: Outcome, module=None) -> None:
        """Written into a temporary folder, then renamed: a reader sees all of it or nothing."""
        import torch

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{threading.get_ident()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if module is not None:
            torch.jit.save(module, str(tmp / quantize.INT8_FILE))
        (tmp / "record.json").write_text(outcome.model_dump_json(indent=1) + "\n")
        if (self.root / key / RUNTIME_FILE).is_file():  # the runtime chosen before calibrating
            shutil.copyfile(self.root / key / RUNTIME_FILE, tmp / RUNTIME_FILE)
        shutil.rmtree(self.root / key, ignore_errors=True)
        tmp.rename(self.root / key)


class _Stopped(Exception):
    pass


class AutoInt8:
    """Stands in front of a classifier's forward (``infer``) for one loaded model."""

    def __init__(self, classifier, settings: AutoInt8Settings, cache: Int8Cache | None = None):
        self.classifier, self.settings = classifier, settings
        self.cache = cache or Int8Cache(default_cache_dir())
        self.state, self.reason = "off", ""
        self.checked = self.agreed = 0
        self._offers: queue.Queue = queue.Queue(maxsize=2)
        self._seen: set[bytes] = set()  # digests of the clips the learner took
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.key: str | None = None
        self._safe = classifier.backend
        why_not = self._why_not()
        if why_not is not None:
            self._set("off", why_not)
            return
        self.key = Int8Cache.key(classifier)
        self._choice = self.cache.runtime_choice(self.key)
        _use_choice(classifier, self._choice)
        self._safe = classifier.backend
        known = self.cache.outcome(self.key)
        if known is not None and known.passed:
            if use_cached_int8(classifier, self.cache, self.key) is not None:
                self._set("int8", f"int8 from the cache ({self.cache.root / self.key}): {known.reason}")
                return
            known = None
        if known is not None and known.attempts >= settings.attempts:
            self._set("failed", f"{known.reason}; not tried again ({known.attempts} of "
                                f"CLIPWATCH_AUTO_INT8_ATTEMPTS={settings.attempts} attempts used)")
            return
        self._attempt = (known.attempts if known is not None else 0) + 1
        if self._choice is None and settings.runtime_clips > 0 and importable("openvino"):
            self._set("choosing", f"serving {self._safe} while OpenVINO is timed against it on "
                                  f"{settings.runtime_clips} distinct served clips")
        else:
            self._set("calibrating", f"serving {self._safe} while int8 calibrates on "
                                     f"{settings.calibration_clips} distinct served clips")
        self._thread = threading.Thread(target=self._learn, daemon=True, name="auto-int8")
        self._thread.start()

    def _why_not(self) -> str | None:
        c = self.classifier
        if not self.settings.enabled:
            return f"serving {c.backend}: automatic int8 is turned off (CLIPWATCH_AUTO_INT8=off)"
        if c.runtime.precision == "int8":
            return f"serving {c.backend}: the model directory's own checked int8 module"
        if c.precision_requested != "auto" or c.runtime_requested != "auto":
            return f"serving {c.backend}, as asked (--runtime/--precision)"
        if c.runtime.name != "torch":
            return f"serving {c.backend}: the fast path is learnt on CPU endpoints served by torch"
        if c.directory is None:
            return f"serving {c.backend}: not loaded from a model directory"
        return None

    def _set(self, state: str, reason: str, exc_info: bool = False) -> None:
        self.state, self.reason = state, reason
        metrics.AUTO_INT8.state(state)
        (log.warning if state == "failed" else log.info)("precision: %s", reason, exc_info=exc_info)

    @property
    def learning(self) -> bool:
        return self.state in LEARNING

    @property
    def status(self) -> dict:
        """/ping's ``precision``."""
        out = {"serving": self.classifier.backend, "auto_int8": self.state, "reason": self.reason}
        if self.state == "checking":
            out["checked_clips"], out["agreed_clips"] = self.checked, self.agreed
        return out

    # -- the serving side --------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's forward; while learning, the clip and its answer are offered to
        the learner (never waiting for it: a busy learner misses the clip)."""
        if not self.learning:
            return self.classifier.infer(batch)
        with self.classifier.exclusive():  # timed inside: not the wait for a check's forward
            started = time.perf_counter()
            logits, features = self.classifier.runtime.forward(batch)
            ms_per_clip = (time.perf_counter() - started) * 1000.0 / len(batch)
        try:
            self._offers.put_nowait((batch, logits, ms_per_clip))
        except queue.Full:
            pass
        return logits, features

    def close(self) -> None:
        """Stop learning (the forward in hand finishes first: see ``inference.predictor``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=600)

    # -- the learner -------------------------------------------------------------------------
    def _take(self):
        """The next served clips the learner has not seen, with their answers and the served
        ms per clip: a segment served again (a load test replaying a handful, a client
        retrying) is one piece of evidence, not one per request."""
        while not self._stop.is_set():
            try:
                batch, logits, ms_per_clip = self._offers.get(timeout=0.5)
            except queue.Empty:
                continue
            new = [i for i, clip in enumerate(batch) if self._first_time(clip)]
            if new:
                return batch[new], logits[new], ms_per_clip
        raise _Stopped

    def _first_time(self, clip: np.ndarray) -> bool:
        digest = hashlib.blake2b(clip.tobytes(), digest_size=16).digest()  # ~20 ms a clip, here
        if digest in self._seen:
            return False
        self._seen.add(digest)
        return True

    def _calibration_clips(self):
        """The first clip of each served batch, until there are enough."""
        for _ in range(self.settings.calibration_clips):
            batch, _, _ = self._take()
            yield batch[:1]

    def _learn(self) -> None:
        try:
            if self.state == "choosing":
                self._choose_runtime()
            self._calibrate_and_check()
        except _Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 -- int8 is an optimisation: serving goes on
            self._fail(f"int8 calibration failed ({exc.__class__.__name__}: {exc}); staying on "
                       f"{self._safe}", None, exc_info=True)

    def _choose_runtime(self) -> None:
        """Time OpenVINO against the served torch forwards on the same clips; serve it from
        now on when it agreed on every clip and was ``runtime_min_speedup`` faster."""
        c, need = self.classifier, self.settings.runtime_clips
        try:
            with c.exclusive():  # converting traces the network: not beside a served forward
                other = _runtime_named(c, "openvino")
        except Exception as exc:  # noqa: BLE001 -- a graph OpenVINO cannot convert: torch serves
            log.warning("OpenVINO cannot run %s", c.directory, exc_info=True)
            return self._chose(RuntimeChoice(runtime=c.runtime.name, created_at=utc_now(),
                                             reason=f"OpenVINO could not run this model ({exc.__class__.__name__}: "
                                                    f"{str(exc)[:200]}); serving {self._safe}"))
        speedup = self._side_by_side(other, need, allowed=need, warm_up=True)
        figures = (f"{other.name}-{other.precision} agreed with {self._safe} on {self.agreed} of "
                   f"{self.checked} distinct served clips, {speedup:.2f}x its speed")
        if self.agreed == self.checked and speedup >= self.settings.runtime_min_speedup:
            safe, self._safe = self._safe, f"{other.name}-{other.precision}"
            _serve(c, other)
            return self._chose(RuntimeChoice(runtime=other.name, speedup=round(speedup, 3),
                                             reason=f"{figures}: serving it instead of {safe}",
                                             created_at=utc_now()))
        self._chose(RuntimeChoice(runtime=c.runtime.name, speedup=round(speedup, 3), created_at=utc_now(),
                                  reason=f"{figures} (needs {self.settings.runtime_min_speedup}x and every "
                                         f"clip): staying on {self._safe}"))

    def _side_by_side(self, other, need: int, allowed: int, warm_up: bool = False) -> float:
        """Run ``other`` on the next ``need`` distinct served clips, each right after it was
        served: ``checked`` and ``agreed`` count them (top-1 the same as served), stopping once
        more than ``allowed`` differ. The served forwards' speed over ``other``'s (median ms per
        clip, both timed inside the model's lock)."""
        self.checked = self.agreed = 0
        served_ms, other_ms = [], []
        while self.checked < need:
            batch, served, ms = self._take()
            batch, served = batch[:need - self.checked], served[:need - self.checked]
            with self.classifier.exclusive():
                if warm_up and not other_ms:
                    other.forward(batch[:1])  # its first inference allocates: not timed
                started = time.perf_counter()
                logits, _ = other.forward(batch)
                other_ms.append((time.perf_counter() - started) * 1000.0 / len(batch))
            served_ms.append(ms)
            self.checked += len(batch)
            self.agreed += int(np.sum(np.argmax(logits, 1) == np.argmax(served, 1)))
            if self.checked - self.agreed > allowed:
                break  # the bound cannot be reached any more
        return float(np.median(served_ms) / np.median(other_ms))

    def _chose(self, choice: RuntimeChoice) -> None:
        self._choice = choice
        self.cache.save_runtime_choice(self.key, choice)
        log.info("runtime: %s", choice.reason)
        self._set("calibrating", f"{choice.reason}; int8 calibrates on {self.settings.calibration_clips} "
                                 f"distinct served clips")

    def _calibrate_and_check(self) -> None:
        started = time.monotonic()
        # each calibration forward takes the model's lock: live requests interleave with them
        module = quantize.quantize(self.classifier.directory, self._calibration_clips(),
                                   lock=self.classifier.exclusive())
        if self._stop.is_set():
            raise _Stopped
        fast = self.classifier.runtime_like(module)
        self._set("checking", f"serving {self._safe} while int8 is checked against it on "
                              f"{self.settings.check_clips} distinct served clips")
        need = self.settings.check_clips
        allowed = int(np.floor(need * (1.0 - quantize.MIN_AGREEMENT) + 1e-9))
        speedup = self._side_by_side(fast, need, allowed)
        agreement = self.agreed / self.checked
        record = quantize.Int8Record(
            calibration_clips=self.settings.calibration_clips,
            calibration_data=f"segments served by {self.classifier.card.version}",
            checked_clips=self.checked, agreement=round(agreement, 4), created_at=utc_now())
        figures = (f"int8 agreed with {self._safe} on {self.agreed} of {self.checked} distinct served clips "
                   f"({agreement:.1%}), {speedup:.2f}x its speed")
        if self.checked < need or agreement < quantize.MIN_AGREEMENT:
            return self._fail(f"{figures}: under the {quantize.MIN_AGREEMENT:.0%} needed; staying on "
                              f"{self._safe}", record, speedup)
        if speedup <= self.settings.min_speedup:
            return self._fail(f"{figures}: not faster; staying on {self._safe}", record, speedup)
        reason = f"{figures} (calibrated and checked in {time.monotonic() - started:.0f} s)"
        self._keep(True, reason, record, speedup, module)
        _serve(self.classifier, fast)
        self._set("int8", reason)

    def _fail(self, reason: str, record, speedup: float = 0.0, exc_info: bool = False) -> None:
        self._keep(False, reason, record, speedup)
        self._set("failed", reason, exc_info)

    def _keep(self, passed: bool, reason: str, record, speedup: float, module=None) -> None:
        """This attempt's outcome (and, when it passed, the module) in the cache."""
        self.cache.save(self.key, Outcome(passed=passed, reason=reason, int8=record, reference=self._safe,
                                          speedup=round(speedup, 3), attempts=self._attempt,
                                          created_at=utc_now()), module)


def _serve(classifier, runtime) -> None:
    """Serve the classifier's next forwards on ``runtime``; the metric says so."""
    classifier.use(runtime)
    metrics.MODEL_INFO.info(classifier.info)


def _runtime_named(classifier, name: str):
    """``classifier``'s network on runtime ``name`` at the precision it serves, close calls
    settled in fp32 as its card says."""
    from .runtime import load_runtime

    return load_runtime(classifier.directory, name, classifier.runtime.precision,
                        tie_margin=classifier.card.tie_margin, input_shape=classifier.card.input.clip_shape())


def _use_choice(classifier, choice: RuntimeChoice | None) -> None:
    """Serve ``classifier`` on the runtime chosen before, if it is another and can be built."""
    if choice is None or choice.runtime == classifier.runtime.name:
        return
    try:
        _serve(classifier, _runtime_named(classifier, choice.runtime))
    except Exception:  # noqa: BLE001 -- e.g. OpenVINO uninstalled since: what serves now goes on
        log.warning("cannot serve on %s as chosen before (%s); staying on %s", choice.runtime,
                    choice.reason, classifier.backend, exc_info=True)


def use_learnt(classifier, cache: Int8Cache | None = None, key: str | None = None) -> str:
    """Move ``classifier`` to what an endpoint learnt for its weights on this machine — the
    runtime it chose and the int8 module it checked, where there are — (benchmarks measure what
    was served with them); the backend it serves on."""
    cache = cache or Int8Cache(default_cache_dir())
    key = key or Int8Cache.key(classifier)
    _use_choice(classifier, cache.runtime_choice(key))
    use_cached_int8(classifier, cache, key)
    return classifier.backend


def use_cached_int8(classifier, cache: Int8Cache, key: str) -> Outcome | None:
    """Move ``classifier`` to the int8 module learnt and checked for its weights, if there is
    one; its outcome."""
    known = cache.outcome(key)
    module = cache.module(key) if known is not None and known.passed else None
    if module is None:
        return None
    _serve(classifier, classifier.runtime_like(module))
    return known
