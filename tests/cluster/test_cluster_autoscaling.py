"""Each stage scales on its own load: transcription load moves the Transcriber only,
diarization-heavy load moves the Diarizer; afterwards both go back to their minimum."""

from __future__ import annotations

import time

import pytest
from cluster_harness import (
    REPLICA_RANGE,
    ClosedLoopLoad,
    ReplicaTimeline,
    cluster_config,
    deployment_config,
    post_audio,
    report,
    tally,
    wait_for_minimum,
    wav_bytes,
    write_artifact,
)

pytestmark = pytest.mark.cluster

CLIENTS = 4
LOAD_MIN_S = 20.0  # load runs at least this long...
LOAD_MAX_S = 150.0  # ...and until the stage under load has scaled up, or this long
REQUEST_TIMEOUT_S = 400.0


def drive_until(timeline: ReplicaTimeline, stage: str, load: ClosedLoopLoad) -> float:
    """Run ``load`` until ``stage`` has more RUNNING replicas than its minimum (or the
    time is up); stop it and wait for its requests. Returns the seconds it ran."""
    started = time.monotonic()
    load.start()
    low = REPLICA_RANGE[stage][0]
    while time.monotonic() - started < LOAD_MAX_S:
        elapsed = time.monotonic() - started
        if elapsed >= LOAD_MIN_S and timeline.samples and timeline.samples[-1][stage] > low:
            break
        time.sleep(1.0)
    timeline.mark(f"{stage} load: no new requests")
    load.stop()
    return time.monotonic() - started


def test_stages_scale_independently(cluster, openai_client, speech_long, sparse_speech):
    config = cluster_config()
    targets = {
        stage: deployment_config(config, stage)["autoscaling_config"]["target_ongoing_requests"]
        for stage in ("Transcriber", "Diarizer")
    }
    wait_for_minimum()
    long_wav, sparse_wav = wav_bytes(speech_long), wav_bytes(sparse_speech)
    long_s, sparse_s = speech_long.size / 16000, sparse_speech.size / 16000

    transcribe = ClosedLoopLoad(
        CLIENTS,
        lambda _: post_audio(openai_client, long_wav, "json", timeout=REQUEST_TIMEOUT_S),
    )
    diarize = ClosedLoopLoad(
        CLIENTS + 2,
        lambda _: post_audio(openai_client, sparse_wav, "diarized_json", timeout=REQUEST_TIMEOUT_S),
    )
    with ReplicaTimeline() as timeline:
        time.sleep(2)
        timeline.mark(f"transcription load: {CLIENTS} clients, {long_s:.0f} s speech, json")
        phase_one = drive_until(timeline, "Transcriber", transcribe)
        first_phase = list(timeline.samples)
        timeline.mark(
            f"diarization load: {CLIENTS + 2} clients, {sparse_s:.0f} s mostly silence, "
            "diarized_json"
        )
        started_two = time.monotonic()
        phase_two = drive_until(timeline, "Diarizer", diarize)
        second_phase = [s for s in timeline.samples if s not in first_phase]
        timeline.mark("load over: waiting for the minimum")
        load_over = time.monotonic()
        wait_for_minimum(300)
        to_minimum = time.monotonic() - load_over
        timeline.mark(f"both at their minimum ({to_minimum:.0f} s after the load)")
        time.sleep(2)

    report(
        f"autoscaling (targets: Transcriber {targets['Transcriber']:g}, Diarizer "
        f"{targets['Diarizer']:g} ongoing per replica; replicas RUNNING over time):"
    )
    report(timeline.describe())
    report(
        f"  transcription load {phase_one:.0f} s: {tally(transcribe.outcomes)}; "
        f"diarization load {phase_two:.0f} s: {tally(diarize.outcomes)}; "
        f"back to the minimum {to_minimum:.0f} s after the load"
    )
    write_artifact(
        "autoscaling.json",
        {
            "targets": targets,
            "replica_range": REPLICA_RANGE,
            "samples": timeline.samples,
            "events": timeline.events,
            "transcription_load": {
                "clients": CLIENTS,
                "audio_s": long_s,
                "seconds": phase_one,
                "outcomes": tally(transcribe.outcomes),
                "latencies_s": [round(s, 1) for _, s, _ in transcribe.outcomes],
            },
            "diarization_load": {
                "clients": CLIENTS + 2,
                "audio_s": sparse_s,
                "seconds": phase_two,
                "started_s": round(started_two - timeline.started, 1),
                "outcomes": tally(diarize.outcomes),
                "latencies_s": [round(s, 1) for _, s, _ in diarize.outcomes],
            },
            "seconds_to_minimum": to_minimum,
        },
    )

    for outcomes in (transcribe.outcomes, diarize.outcomes):
        assert outcomes and all(status == 200 for status, _, _ in outcomes), tally(outcomes)
    # transcription-only load: the Transcriber scales up, the Diarizer never even starts one
    assert max(s["Transcriber"] for s in first_phase) >= 2
    assert max(s["Diarizer_total"] for s in first_phase) == REPLICA_RANGE["Diarizer"][0]
    # diarization-heavy load (long audio, few words): the Diarizer scales up
    assert max(s["Diarizer"] for s in second_phase) >= 2
