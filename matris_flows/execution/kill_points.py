"""Test-only kill points: a driver that SIGKILLs itself at an exact point of its write path.

The kill tests (``tests/campaign/test_kill_resume.py``) need a driver that dies at moments
no exception can reproduce, e.g. between a job's output write and its journal record.
``MATRIS_FLOWS_TEST_KILL_AT=<point>:<n>[:<job name part>]`` (several separated by ``,``)
makes the process SIGKILL itself the ``n``-th time (counting from 1) it reaches ``point``
for a job whose name contains ``<job name part>``. Points:

- ``write``: after each store write replayed for a worker's job (candidates, blobs, output);
- ``output``: a job's output is stored, its journal record is not written yet;
- ``journal``: the journal record is written, the job's children are not started yet.

Unset (always, outside the tests) :func:`kill_point` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

KILL_AT_ENV = "MATRIS_FLOWS_TEST_KILL_AT"

_counts: Counter[tuple[str, str]] = Counter()


def _parse(text: str) -> list[tuple[str, int, str]]:
    rules = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        point, _, rest = item.partition(":")
        count, _, name = rest.partition(":")
        rules.append((point, int(count or 1), name))
    return rules


_RULES = _parse(os.environ.get(KILL_AT_ENV, ""))


def kill_point(point: str, job_name: str = "", job_id: str = "") -> None:
    """SIGKILL this process if ``MATRIS_FLOWS_TEST_KILL_AT`` names this occurrence of ``point``."""
    if not _RULES:
        return
    for rule_point, count, name_part in _RULES:
        if rule_point != point or name_part not in job_name:
            continue
        _counts[(point, name_part)] += 1
        if _counts[(point, name_part)] == count:
            # the test reads this line to check where the driver died
            print(f"kill point reached ({point}:{count}:{name_part}) at {job_name!r} {job_id}; SIGKILL", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
