"""The job store's state machine, without Ray, on SQLite and on a throwaway PostgreSQL:
submit, claim, progress, cancel, retry, expire, ownership, resume pieces, schema, durability."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select

from speakerscribe.errors import ModelFailureError, RateLimitError
from speakerscribe.jobs import (
    MAX_ATTEMPTS,
    BlobStore,
    JobNotFinishedError,
    JobNotFoundError,
    JobStore,
    StoredJobError,
)
from speakerscribe.jobs.schema import MIGRATIONS, job_pieces, jobs, schema_versions

OpenStore = Callable[..., JobStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database: a file under tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    return request.getfixturevalue("postgres_database_factory")()


@pytest.fixture
def blob_dir(tmp_path) -> str:
    return str(tmp_path / "blobs")


@pytest.fixture
def open_store(url: str, blob_dir: str) -> Iterator[OpenStore]:
    """Opens another JobStore on the test's database and blob folder (its own engine and
    connections, as another replica or process would); all are closed afterwards."""
    opened: list[JobStore] = []

    def open_one(**kwargs) -> JobStore:
        store = JobStore(url, BlobStore(blob_dir), **kwargs)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> JobStore:
    return open_store()


def submitted(store: JobStore, audio: bytes = b"audio", **kwargs) -> str:
    return store.submit({"response_format": "srt"}, audio, response_format="srt", **kwargs)["id"]


def count(store: JobStore, table) -> int:
    with store.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table)) or 0


# --- the state machine (ported from the in-memory JobTable's tests) ---------------------


def test_a_job_runs_reports_rising_progress_and_keeps_its_result(store: JobStore):
    job_id = submitted(store)
    assert store.get(job_id)["status"] == "queued"
    job, audio = store.claim("r1")
    assert job["id"] == job_id and audio == b"audio" and store.get(job_id)["status"] == "running"
    assert job["form"] == {"response_format": "srt"} and job["attempts"] == 1
    assert store.claim("r2") is None  # one runner per job
    for fraction in (0.25, 0.5, 0.4):  # progress never goes back
        assert store.heartbeat(job_id, "r1", "transcription", fraction) is False
    assert store.get(job_id)["progress"] == 0.5
    assert store.get(job_id)["stage"] == "transcription"
    with pytest.raises(JobNotFinishedError, match="running"):
        store.result(job_id)
    store.finish(job_id, "r1", "succeeded", result=b'{"text": "hi"}')
    public, result, form = store.result(job_id)
    assert public["status"] == "succeeded" and public["progress"] == 1.0
    assert result == b'{"text": "hi"}' and form == {"response_format": "srt"}


def test_cancelling_a_running_job_reaches_its_runner_and_a_queued_one_at_once(store: JobStore):
    running, queued = submitted(store), submitted(store)
    store.claim("r1")
    assert store.cancel(running)["status"] == "cancelling"
    assert store.heartbeat(running, "r1", "transcription", 0.1) is True  # the runner stops
    store.finish(running, "r1", "failed")  # whatever the runner says, it was cancelled
    assert store.get(running)["status"] == "cancelled"
    assert store.cancel(queued)["status"] == "cancelled"
    assert store.claim("r1") is None
    with pytest.raises(JobNotFinishedError, match="cancelled"):
        store.result(queued)


def test_a_failed_job_gives_back_its_own_error(store: JobStore):
    job_id = submitted(store)
    store.claim("r1")
    store.finish(job_id, "r1", "failed", error=ModelFailureError("boom"))
    with pytest.raises(StoredJobError) as raised:
        store.result(job_id)
    assert raised.value.status_code == 500 and raised.value.message == "boom"
    assert store.get(job_id)["error"]["code"] == "model_failure"


@pytest.mark.parametrize("inline_max_bytes", [1 << 20, 1], ids=["inline", "blobs"])
def test_a_silent_runner_loses_its_job_to_another_and_its_late_answer_is_ignored(
    open_store: OpenStore, inline_max_bytes: int
):
    store = open_store(stale_after_s=0.05, inline_max_bytes=inline_max_bytes)
    job_id = submitted(store)
    store.claim("dead")
    time.sleep(0.1)
    job, audio = store.claim("alive")
    assert job["id"] == job_id and job["attempts"] == 2 and audio == b"audio"
    assert store.finish(job_id, "dead", "succeeded", result=b"stale") is None
    assert store.heartbeat(job_id, "dead", "x", 0.9) is True
    assert store.finish(job_id, "alive", "succeeded", result=b"fresh")["status"] == "succeeded"
    # the dead runner's answer arriving after the job ended changes nothing either
    assert store.finish(job_id, "dead", "succeeded", result=b"late") is None
    assert store.finish(job_id, "alive", "succeeded", result=b"again") is None
    assert store.result(job_id)[1] == b"fresh"
    # only the kept result's blob is left (the audio's went when the job ended)
    left = [key.split("/")[0] for key in store.blobs.keys()]
    assert left == ([] if inline_max_bytes > 5 else ["result"])


def test_a_job_whose_runners_keep_dying_fails_instead_of_looping(open_store: OpenStore):
    store = open_store(stale_after_s=0.0)
    job_id = submitted(store)
    for _ in range(MAX_ATTEMPTS):
        assert store.claim("r") is not None
        time.sleep(0.01)
    store.requeue_stale()
    assert store.get(job_id)["status"] == "failed"
    assert store.get(job_id)["error"]["code"] == "runner_failed"
    with pytest.raises(StoredJobError) as raised:
        store.result(job_id)
    assert raised.value.status_code == 500


def test_finished_jobs_expire_and_the_store_is_bounded(open_store: OpenStore):
    store = open_store(ttl_s=0.05, max_jobs=2)
    first, _ = submitted(store), submitted(store)
    with pytest.raises(RateLimitError):
        submitted(store)
    store.cancel(first)
    time.sleep(0.1)
    with pytest.raises(JobNotFoundError):
        store.get(first)
    submitted(store)  # room again
    assert len(store.list()) == 2


def test_delete_forgets_a_finished_job_and_cancels_a_running_one(store: JobStore):
    done, running = submitted(store), submitted(store)
    store.claim("r")
    store.finish(done, "r", "succeeded", result=b"1")
    store.claim("r")
    assert store.delete(done)["deleted"] is True
    with pytest.raises(JobNotFoundError):
        store.get(done)
    assert store.delete(running) == {**store.get(running), "deleted": False}
    assert store.get(running)["status"] == "cancelling"


# --- claims from many runners at once ----------------------------------------------------


def _claim_all(store: JobStore, runner: str) -> list[str]:
    """Claim until nothing is queued any more (a claim may find every queued row locked
    by other runners' claims in flight; it looks again)."""
    claimed: list[str] = []
    while True:
        got = store.claim(runner)
        if got is not None:
            claimed.append(got[0]["id"])
            assert got[1] == b"audio"
            continue
        if not any(job["status"] == "queued" for job in store.list(limit=10_000)):
            return claimed


def test_concurrent_runners_each_claim_a_job_exactly_once(open_store: OpenStore):
    runners, total = 4, 60
    submitter = open_store(max_jobs=total)
    ids = [submitted(submitter) for _ in range(total)]
    stores = [open_store(max_jobs=total) for _ in range(runners)]  # own engines, own pools
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(runners)

    def runner(index: int) -> None:
        try:
            start.wait()
            claimed[f"r{index}"] = _claim_all(stores[index], f"r{index}")
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    every = [job_id for jobs_of_runner in claimed.values() for job_id in jobs_of_runner]
    assert sorted(every) == sorted(ids)  # each job once: none twice, none left out
    for name, mine in claimed.items():
        for job_id in mine:
            job = submitter.get(job_id)
            assert job["status"] == "running" and job["attempts"] == 1
            assert not submitter.heartbeat(job_id, name, None, 0.1)  # it is that runner's


def _claim_in_process(url: str, blob_dir: str, runner: str, go, results) -> None:
    store = JobStore(url, BlobStore(blob_dir), max_jobs=1000)
    try:
        go.wait(120)  # every process has started and opened its store
        results.put((runner, _claim_all(store, runner)))
    except BaseException as error:
        results.put((runner, repr(error)))
    finally:
        store.close()


def test_concurrent_processes_each_claim_a_job_exactly_once(
    open_store: OpenStore, url: str, blob_dir: str
):
    processes, total = 3, 45
    submitter = open_store(max_jobs=total)
    ids = [submitted(submitter) for _ in range(total)]
    context = multiprocessing.get_context("spawn")
    go, results = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=_claim_in_process, args=(url, blob_dir, f"p{i}", go, results))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    answers = dict(results.get(timeout=120) for _ in children)
    for child in children:
        child.join(timeout=30)
    failed = {name: found for name, found in answers.items() if isinstance(found, str)}
    assert not failed, failed
    every = [job_id for found in answers.values() for job_id in found]
    assert sorted(every) == sorted(ids)


# --- expiry, limits and blobs -------------------------------------------------------------


def test_expiry_deletes_the_row_its_pieces_and_its_blobs(open_store: OpenStore):
    store = open_store(ttl_s=0.05, inline_max_bytes=4)
    job_id = submitted(store, audio=b"audio-in-a-blob")
    assert store.blobs.keys() == [f"audio/{job_id}"]
    job, audio = store.claim("r")
    assert audio == b"audio-in-a-blob"
    store.save_piece(job_id, "0:0:16000", b"words")
    store.finish(job_id, "r", "succeeded", result=b"a result too big to keep inline")
    assert [key.split("/")[0] for key in store.blobs.keys()] == ["result"]  # audio gone
    assert count(store, job_pieces) == 0  # pieces go when a job ends
    assert store.result(job_id)[1] == b"a result too big to keep inline"
    store.save_piece(job_id, "late", b"a runner's late piece")  # still kept until expiry
    time.sleep(0.1)
    assert job_id in store.expire()
    with pytest.raises(JobNotFoundError):
        store.get(job_id)
    assert count(store, jobs) == 0 and count(store, job_pieces) == 0
    assert store.blobs.keys() == []


def test_max_jobs_refuses_more_and_keeps_no_blob_of_the_refused_upload(open_store: OpenStore):
    store = open_store(max_jobs=2, inline_max_bytes=1)
    kept = [submitted(store), submitted(store)]
    with pytest.raises(RateLimitError) as raised:
        submitted(store)
    assert raised.value.code == "too_many_jobs" and raised.value.status_code == 429
    assert store.blobs.keys() == sorted(f"audio/{job_id}" for job_id in kept)
    assert count(store, jobs) == 2
    store.delete(kept[0])  # a queued job is cancelled and forgotten, its upload too
    assert store.blobs.keys() == [f"audio/{kept[1]}"]
    submitted(store)


# --- ownership ------------------------------------------------------------------------------


def test_another_owners_job_answers_as_a_missing_one(store: JobStore):
    job_id = submitted(store, owner="a")
    store.claim("r")
    store.finish(job_id, "r", "succeeded", result=b"a's words")
    for call in (store.get, store.result, store.cancel, store.delete):
        with pytest.raises(JobNotFoundError):
            call(job_id, viewer="b")
    assert store.list(viewer="b") == []
    assert [job["id"] for job in store.list(viewer="a")] == [job_id]
    assert [job["id"] for job in store.list(viewer=None)] == [job_id]
    assert store.get(job_id, viewer="a")["status"] == "succeeded"
    assert store.result(job_id, viewer=None)[1] == b"a's words"
    assert "owner" not in store.get(job_id)  # never shown
    assert store.delete(job_id, viewer=None)["deleted"] is True


# --- resume bookkeeping -------------------------------------------------------------------


def test_pieces_survive_a_requeue_for_the_next_runner(open_store: OpenStore):
    first, second = open_store(stale_after_s=0.05), open_store(stale_after_s=0.05)
    job_id = submitted(first)
    first.claim("dead")
    first.save_piece(job_id, "0:0:100", b"one")
    first.save_piece(job_id, "0:100:200", b"two")
    time.sleep(0.1)  # the runner goes silent
    assert second.requeue_stale() == [job_id]
    assert second.get(job_id)["status"] == "queued"
    job, _ = second.claim("alive")
    assert job["id"] == job_id and job["attempts"] == 2
    assert second.pieces(job_id) == {"0:0:100": b"one", "0:100:200": b"two"}
    second.heartbeat(job_id, "alive", "transcription", 0.5, pieces=(3, 2, 2))
    assert second.get(job_id)["pieces"] == {"total": 3, "done": 2, "reused": 2}


def test_a_piece_saved_twice_keeps_the_first_and_pieces_go_when_the_job_ends(store: JobStore):
    job_id, other = submitted(store), submitted(store)
    store.claim("r")
    store.claim("r")
    store.save_piece(job_id, "k", b"first")
    store.save_piece(job_id, "k", b"second")
    store.save_piece(other, "k", b"another job's")
    assert store.pieces(job_id) == {"k": b"first"}
    store.finish(job_id, "r", "succeeded", result=b"done")
    assert store.pieces(job_id) == {}
    assert store.pieces(other) == {"k": b"another job's"}
    store.cancel(other)
    store.finish(other, "r", "succeeded", result=b"too late")
    assert store.get(other)["status"] == "cancelled" and store.pieces(other) == {}


def test_release_requeues_a_running_job_without_spending_an_attempt(store: JobStore):
    job_id = submitted(store)
    store.claim("leaving")
    store.save_piece(job_id, "k", b"kept")
    assert store.release(job_id, "someone else") is False
    assert store.release(job_id, "leaving") is True
    assert store.release(job_id, "leaving") is False  # not running any more
    public = store.get(job_id)
    assert public["status"] == "queued" and public["attempts"] == 0
    assert store.heartbeat(job_id, "leaving", None, 0.2) is True  # no longer its job
    job, _ = store.claim("next")
    assert job["attempts"] == 1 and store.pieces(job_id) == {"k": b"kept"}


def test_heartbeat_reports_the_pieces(store: JobStore):
    job_id = submitted(store)
    assert store.get(job_id)["pieces"] == {"total": 0, "done": 0, "reused": 0}
    store.claim("r")
    store.heartbeat(job_id, "r", "transcription", 0.1, pieces=(10, 4, 1))
    assert store.get(job_id)["pieces"] == {"total": 10, "done": 4, "reused": 1}
    store.heartbeat(job_id, "r", None, 0.2)  # without pieces: the figures stay
    assert store.get(job_id)["pieces"] == {"total": 10, "done": 4, "reused": 1}
    assert store.get(job_id)["stage"] == "transcription"


# --- schema and durability --------------------------------------------------------------


def test_a_second_store_on_the_same_database_applies_no_migration_again(
    open_store: OpenStore,
):
    first = open_store()
    version = first.migrate()
    assert version == len(MIGRATIONS)
    job_id = submitted(first)
    second = open_store()
    assert second.migrate() == version
    with second.engine.connect() as connection:
        versions = connection.execute(select(schema_versions.c.version)).scalars().all()
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
    assert second.get(job_id)["status"] == "queued"


def test_a_reopened_store_still_has_the_finished_job_and_its_result(
    url: str, blob_dir: str, open_store: OpenStore
):
    for inline_max_bytes in (1 << 20, 1):
        store = JobStore(url, BlobStore(blob_dir), inline_max_bytes=inline_max_bytes)
        job_id = submitted(store, owner="a")
        failed = submitted(store)
        store.claim("r")
        store.finish(job_id, "r", "succeeded", result=b"the transcript")
        store.claim("r")
        store.finish(failed, "r", "failed", error=ModelFailureError("boom"))
        store.close()
        reopened = open_store()
        public, result, form = reopened.result(job_id, viewer="a")
        assert public["status"] == "succeeded" and result == b"the transcript"
        assert form == {"response_format": "srt"}
        with pytest.raises(StoredJobError, match="boom"):
            reopened.result(failed)
        reopened.delete(job_id)
        reopened.delete(failed)
    assert reopened.blobs.keys() == []
