"""Screening rate and ETA from the screened count sampled over time (the server samples it at every refresh)."""

from __future__ import annotations

import threading
import time
from collections import deque

WINDOW_S = 600.0
"""The rate is measured over the last ten minutes of samples (recent speed, not the average since start)."""


class ScreeningRate:
    """Structures screened per minute, from (time, screened) samples of one server process."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()  # page refreshes of several browser tabs arrive on several threads

    def add(self, screened: int, now: float | None = None) -> None:
        """Record the screened count now; a count that went down (a fresh start) restarts the measurement."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._samples and screened < self._samples[-1][1]:
                self._samples.clear()
            self._samples.append((now, screened))
            while len(self._samples) > 2 and now - self._samples[1][0] > self.window_s:
                self._samples.popleft()

    def per_minute(self) -> float | None:
        """Structures per minute over the window; None until two samples at least 2 s apart exist."""
        with self._lock:
            if len(self._samples) < 2:
                return None
            (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) * 60 if t1 - t0 >= 2 else None

    def eta_minutes(self, remaining: int) -> float | None:
        """Minutes to screen ``remaining`` more structures at the current rate (None when unknown or stalled)."""
        rate = self.per_minute()
        return remaining / rate if rate else None
