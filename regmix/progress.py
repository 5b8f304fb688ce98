"""Progress of long work: a tqdm bar on a terminal, else a plain line every `every` seconds.

Logs, CI and `regmix demo > log 2>&1` see `sweep: 8/16 proxies, 23,041 tok/s, ETA 1.2 min` lines
instead of silence; the last line is always printed.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


class Progress:
    def __init__(self, what: str, total: int, unit: str, initial: int = 0, enabled: bool = True,
                 stream=None, every: float = 20.0):
        self.what, self.total, self.unit, self.every = what, total, unit, every
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.bar = tqdm(total=total, initial=initial, unit=unit.rstrip("s") or unit, desc=what, file=self.stream,
                        disable=not self.tty, dynamic_ncols=True)
        self.done, self.note, self.last = initial, "", time.monotonic()
        self.printed = None  # the count of the last plain line

    def update(self, done: int, note: str = "") -> None:
        """`done` of `total` finished; `note` (rate, ETA) follows the count."""
        if self.tty:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(note, refresh=True)
        elif self.enabled and (done != self.done or note) and time.monotonic() - self.last >= self.every:
            self._line(done, note)
        self.done, self.note = done, note

    def close(self) -> None:
        if self.tty:
            self.bar.close()
        elif self.enabled and self.printed != self.done:  # the last line always shows, once
            self._line(self.done, self.note)

    def _line(self, done: int, note: str) -> None:
        print(f"{self.what}: {done}/{self.total} {self.unit}" + (f", {note}" if note else ""), file=self.stream, flush=True)
        self.last, self.printed = time.monotonic(), done


class Rate:
    """Units per second since the work first moved: time spent before that (starting processes,
    compiling) says nothing about the pace, and counting it made the first ETAs far too long. No rate (0)
    until `settle` seconds after that first movement."""

    def __init__(self, start: float, clock=time.monotonic, settle: float = 10.0):
        self.clock, self.t0, self.v0, self.settle = clock, None, start, settle

    def __call__(self, value: float) -> float:
        now = self.clock()
        if self.t0 is None:
            if value > self.v0:
                self.t0, self.v0 = now, value
            return 0.0
        if now - self.t0 < self.settle:  # progress arrives in bursts: a rate over a few seconds is noise
            return 0.0
        return (value - self.v0) / (now - self.t0)


def eta_note(rate: float, left: float, unit: str) -> str:
    """`23,041 tok/s, ETA 1.2 min` (or without an ETA while the rate is unknown)."""
    if rate <= 0:
        return ""
    shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
    return f"{shown} {unit}/s, ETA {left / rate / 60:.1f} min"
