"""Progress of a running campaign for people: structures screened, rate and ETA, failed jobs at once.

Pass a :class:`ScreeningProgress` as ``progress`` to :func:`~matris_flows.campaign.runner.run_campaign`
(the CLI's ``screen`` and ``resume`` do); any other callable taking a
:class:`~matris_flows.execution.JobEvent` works as well.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ScreeningProgress:
    """Structures screened (relaxed and on the hull), with rate and ETA, on stderr.

    The total grows as generation shards finish (each reports its candidates); a chunk's
    hull job adds its candidates when it finishes. On a terminal this is a tqdm bar; when
    stderr is not a terminal (a log file, a batch job) a plain line is printed every ~10 %
    or every 30 s instead. Failed jobs are reported at once, as one ``error:`` line each.
    """

    def __init__(self, stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.start = time.perf_counter()
        self.total = 0
        self.done = 0
        self.failed_jobs = 0
        self._bar = None
        self._last_line = (0.0, -1.0)  # (time, fraction) of the last plain line

    def begin(self, generated: int, screened: int) -> None:
        """Counts from earlier runs of a resumed campaign."""
        self.total, self.done = generated, screened
        self._show()

    def __call__(self, event) -> None:
        name = event.name
        if event.status == "failed":
            self.failed_jobs += 1
            self._write(f"error: job failed: {name}: {event.error or 'unknown error'}")
        elif event.status == "completed":
            from matris_flows.generation.schemas import GenerationShard
            from matris_flows.thermo.schemas import HullOutput

            if isinstance(event.output, GenerationShard):  # the shard's candidates join the total
                self.total += event.output.n_candidates
            elif isinstance(event.output, HullOutput):  # a chunk's candidates are screened
                self.done += len(event.output.candidate_ids)
            else:
                return
            self._show()

    def close(self, last_line: bool = True) -> None:
        """Finish the bar (or print a last plain line, unless ``last_line`` is false: the run failed)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif last_line and not self.interactive and self.total:
            self._line()

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _show(self) -> None:
        if self.interactive:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, initial=self.done, unit="structure", desc="screened", file=self.stream)
            self._bar.total = max(self.total, self.done)
            self._bar.n = self.done
            self._bar.refresh()
            return
        now, fraction = time.perf_counter(), self.done / max(self.total, 1)
        last_time, last_fraction = self._last_line
        if self.total and (fraction - last_fraction >= 0.1 or now - last_time >= 30 or self.done >= self.total):
            self._line()

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed * 60 if elapsed > 0 else 0.0
        left = max(self.total - self.done, 0)
        eta = f"{left / rate:.1f} min" if rate > 0 else "-"
        fraction = self.done / max(self.total, 1)
        print(
            f"screened {self.done}/{self.total} structures ({100 * fraction:.0f} %)  {rate:.1f}/min  ETA {eta}",
            file=self.stream,
            flush=True,
        )
        self._last_line = (time.perf_counter(), fraction)
