"""Jobs sharing a worker process: one runs at a time, a waiting one gets its CURRENT_JOB back."""

import threading

from jobflow import CURRENT_JOB

from matris_flows.core.job_slot import job_slot, waiting_elsewhere


def test_a_job_that_waits_lets_another_run_and_gets_its_current_job_back():
    waiting, other_done = threading.Event(), threading.Event()
    seen = {}

    def first():
        with job_slot():
            CURRENT_JOB.job = "job-a"
            with waiting_elsewhere():
                waiting.set()
                assert other_done.wait(10)
            seen["a after wait"] = CURRENT_JOB.job
            CURRENT_JOB.reset()

    def second():
        assert waiting.wait(10)
        with job_slot():  # free while the first job waits
            CURRENT_JOB.job = "job-b"
            seen["b"] = CURRENT_JOB.job
            CURRENT_JOB.reset()  # what Job.run does at its end
        other_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == {"b": "job-b", "a after wait": "job-a"}


def test_jobs_that_do_not_wait_run_one_at_a_time():
    inside, overlaps = [], []
    lock = threading.Lock()

    def job(name):
        with job_slot():
            with lock:
                inside.append(name)
                overlaps.append(len(inside))
            threading.Event().wait(0.05)
            with lock:
                inside.remove(name)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert overlaps == [1, 1, 1, 1]


def test_waiting_outside_a_slot_does_nothing():
    CURRENT_JOB.job = "plain"
    with waiting_elsewhere():
        pass
    assert CURRENT_JOB.job == "plain"
    CURRENT_JOB.reset()
