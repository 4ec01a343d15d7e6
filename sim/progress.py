"""Progress of a long run on stderr: a bar on a terminal, a line every few seconds otherwise.

The estimate of the time left is honest about what it knows: it is the rate
measured since the first step (what runs before it, such as planning, is no
step's), none is given before a tenth of the work and a second have passed,
and work is counted in ``weight`` rather than in steps, so that steps of
unequal cost (the first layer of a shape is mapped and scheduled, its repeats
reuse that) do not skew it.  A step that runs longer than a line's period (one large layer
of a functional check, a minute on a small configuration) does not leave the run silent: from
the first step on, a thread repeats the line with how long the step under way has run.
``layer_weights`` gives the weights of a network's layers.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Optional, TextIO

from hw.cli import duration
from mapper.ir import Model

__all__ = ["Progress", "layer_weights"]

#: The weight of a layer whose kind and shape an earlier layer had (its mapping is reused).
REPEAT_WEIGHT = 0.05


def layer_weights(model: Model) -> dict[str, float]:
    """Expected relative cost of simulating each layer: 1 for the first layer of a (kind, shape),
    ``REPEAT_WEIGHT`` for the layers that repeat it."""
    seen: set = set()
    out = {}
    for layer in model.layers:
        key = (layer.kind, layer.shape_str)
        out[layer.name] = REPEAT_WEIGHT if key in seen else 1.0
        seen.add(key)
    return out


class Progress:
    """Progress of ``total`` steps (weighing ``total_weight`` together) on ``stream``.

    On a terminal the line is redrawn at most ten times a second; otherwise a full line is
    printed every ``period`` seconds.  ``enabled=False`` prints nothing.
    """

    def __init__(self, desc: str, total: int, *, unit: str = "layer", total_weight: Optional[float] = None,
                 enabled: bool = True, stream: Optional[TextIO] = None, period: float = 10.0):
        self.desc, self.total, self.unit = desc, total, unit
        self.total_weight = total_weight if total_weight else float(total)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.period = period if not self.tty else 0.1
        self.done = 0
        self.weight = 0.0
        self.postfix = ""
        self.t0 = self.last = self.stepped = time.monotonic()
        self.first: Optional[tuple[float, float]] = None     # (time, weight) at the first step
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # a terminal's line is redrawn each second while a step runs; a log's every period
        self.beat = max(self.period, 1.0) if self.tty else max(self.period, 0.05)
        self._heartbeat = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        self.postfix = text

    def update(self, n: int = 1, weight: Optional[float] = None) -> None:
        with self._lock:
            now = self.stepped = time.monotonic()
            if self.first is None:
                # The rate is measured from here: what ran before the first step (set-up) is no step's.
                self.first = (now, self.weight)
                if self.enabled:
                    self._heartbeat.start()
            self.done += n
            self.weight += n if weight is None else weight
            if self.enabled and now - self.last >= self.period:
                self.last = now
                self._show(now)

    def _beat(self) -> None:
        """The line again when no step has printed it for a beat.  The thread wakes a beat after the
        last line, whoever printed it: waking on a fixed grid, it found a step's line printed just
        before a wake too recent and slept a whole beat more (a log silent for 17 s of a 10 s period)."""
        wait = self.beat
        while not self._stop.wait(wait):
            with self._lock:
                now = time.monotonic()
                if now - self.last >= self.beat and not self._stop.is_set():
                    self.last = now
                    self._show(now)
                wait = max(self.last + self.beat - now, 0.01)

    def _line(self, now: float) -> str:
        elapsed = now - self.t0
        t1, w1 = self.first or (now, self.weight)
        measured = (self.weight - w1) / self.total_weight
        if measured >= 0.1 and now - t1 >= 1.0:
            left = (self.total_weight - self.weight) / self.total_weight
            left = f"about {duration((now - t1) * left / measured)} left"
        else:
            left = "estimating the time left"
        running = now - self.stepped
        last = f"  {self.postfix}" if self.postfix else ""
        if self.done < self.total and running >= self.beat:
            last = f", {self.unit} {self.done + 1} running for {duration(running)}" + (f" (after {self.postfix})"
                                                                                    if self.postfix else "")
        return f"{self.desc}: {self.done}/{self.total} {self.unit}s, {duration(elapsed)} elapsed, {left}{last}"

    def _show(self, now: float) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self._line(now)[:200])
        else:
            self.stream.write(self._line(now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """No more lines; a terminal's bar is cleared.  Closing again does nothing."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
