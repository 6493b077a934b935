"""The job table's state machine, without Ray: submit, claim, progress, cancel, retry, expire."""

from __future__ import annotations

import time

import pytest

from speakerscribe.errors import ModelFailureError, RateLimitError
from speakerscribe.jobs import JobNotFinishedError, JobNotFoundError, JobTable


def submitted(table: JobTable, **kwargs) -> str:
    return table.submit({"response_format": "srt"}, b"audio", response_format="srt", **kwargs)["id"]


def test_a_job_runs_reports_rising_progress_and_keeps_its_result():
    table = JobTable()
    job_id = submitted(table)
    assert table.get(job_id)["status"] == "queued"
    job, audio = table.claim("r1")
    assert job["id"] == job_id and audio == b"audio" and table.get(job_id)["status"] == "running"
    assert table.claim("r2") is None  # one runner per job
    for fraction in (0.25, 0.5, 0.4):  # progress never goes back
        assert table.heartbeat(job_id, "r1", "transcription", fraction) is False
    assert table.get(job_id)["progress"] == 0.5
    with pytest.raises(JobNotFinishedError, match="running"):
        table.result(job_id)
    table.finish(job_id, "r1", "succeeded", result={"text": "hi"})
    public, result, form = table.result(job_id)
    assert public["status"] == "succeeded" and public["progress"] == 1.0
    assert result == {"text": "hi"} and form == {"response_format": "srt"}


def test_cancelling_a_running_job_reaches_its_runner_and_a_queued_one_at_once():
    table = JobTable()
    running, queued = submitted(table), submitted(table)
    table.claim("r1")
    assert table.cancel(running)["status"] == "cancelling"
    assert table.heartbeat(running, "r1", "transcription", 0.1) is True  # the runner stops
    table.finish(running, "r1", "failed")  # whatever the runner says, it was cancelled
    assert table.get(running)["status"] == "cancelled"
    assert table.cancel(queued)["status"] == "cancelled"
    assert table.claim("r1") is None


def test_a_failed_job_gives_back_its_own_error():
    table = JobTable()
    job_id = submitted(table)
    table.claim("r1")
    table.finish(job_id, "r1", "failed", error=ModelFailureError("boom"))
    with pytest.raises(Exception) as raised:
        table.result(job_id)
    assert raised.value.status_code == 500 and raised.value.message == "boom"
    assert table.get(job_id)["error"]["code"] == "model_failure"


def test_a_silent_runner_loses_its_job_to_another_and_its_late_answer_is_ignored():
    table = JobTable(stale_after_s=0.05)
    job_id = submitted(table)
    table.claim("dead")
    time.sleep(0.1)
    job, _ = table.claim("alive")
    assert job["id"] == job_id and job["attempts"] == 2
    assert table.finish(job_id, "dead", "succeeded", result="stale") is None
    assert table.heartbeat(job_id, "dead", "x", 0.9) is True
    table.finish(job_id, "alive", "succeeded", result="fresh")
    assert table.result(job_id)[1] == "fresh"


def test_a_job_whose_runners_keep_dying_fails_instead_of_looping():
    table = JobTable(stale_after_s=0.0)
    job_id = submitted(table)
    for _ in range(3):
        table.claim("r")
        time.sleep(0.01)
    table.requeue_stale()
    assert table.get(job_id)["status"] == "failed"
    assert table.get(job_id)["error"]["code"] == "runner_failed"


def test_finished_jobs_expire_and_the_table_is_bounded():
    table = JobTable(ttl_s=0.05, max_jobs=2)
    first, _ = submitted(table), submitted(table)
    with pytest.raises(RateLimitError):
        submitted(table)
    table.cancel(first)
    time.sleep(0.1)
    with pytest.raises(JobNotFoundError):
        table.get(first)
    submitted(table)  # room again
    assert len(table.list()) == 2


def test_delete_forgets_a_finished_job_and_cancels_a_running_one():
    table = JobTable()
    done, running = submitted(table), submitted(table)
    table.claim("r")
    table.finish(done, "r", "succeeded", result=1)
    table.claim("r")
    assert table.delete(done)["deleted"] is True
    assert table.delete(running) == {**table.get(running), "deleted": False}
    assert table.get(running)["status"] == "cancelling"
