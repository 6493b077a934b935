"""The browser page at /ui/: upload, record, download, rename, jobs, API key and phone-width
flows in headless Chromium (Playwright).

Chromium is Debian's (`apt-get install chromium`), driven by the Playwright package's own
driver; no `playwright install`. The microphone is Chromium's fake capture device playing
the shared two-speaker sample.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
import srt
import webvtt
from playwright.sync_api import Page, expect, sync_playwright

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists() and not os.environ.get("SPEAKERSCRIBE_REQUIRE_BROWSER"):  # CI sets it
    pytest.skip(
        "Debian's Chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )

# Words of the sample's reference transcript (pyannote/sample.stm) that tiny.en gets right.
EXPECTED_WORDS = {"hello", "diane", "jersey", "sheila", "texas", "chicago", "originally", "there"}
TRANSCRIBE_TIMEOUT_MS = 240_000
FIRST_FINAL_TIMEOUT_MS = 90_000
JOB_PROGRESS_TIMEOUT_MS = 240_000
SAMPLE = "pyannote/sample.wav"
API_KEY = "sk-page-test-123"


def words_in(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower())) & EXPECTED_WORDS


@pytest.fixture(scope="module")
def fake_microphone(testdata, tmp_path_factory) -> Path:
    """The sample as the 16-bit PCM WAV Chromium's fake capture wants, with silence around it
    so that server VAD sees the last turn end."""
    audio, rate = sf.read(testdata / "pyannote/sample.wav", dtype="int16", always_2d=True)
    mono = audio.mean(axis=1).astype(np.int16)
    silence = np.zeros(int(rate * 1.0), dtype=np.int16)
    path = tmp_path_factory.mktemp("microphone") / "sample-pcm16.wav"
    sf.write(path, np.concatenate([silence, mono, silence, silence]), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def long_wav(testdata, tmp_path_factory) -> Path:
    """The sample repeated to 6 minutes as 16 kHz stereo PCM WAV (23 MB): over the page's
    size threshold for going through the jobs API (20 MB)."""
    audio, rate = sf.read(testdata / SAMPLE, dtype="int16", always_2d=True)
    mono = audio.mean(axis=1).astype(np.int16)
    samples = 6 * 60 * rate
    long = np.tile(mono, math.ceil(samples / mono.size))[:samples]
    path = tmp_path_factory.mktemp("long") / "sample-6min.wav"
    sf.write(path, np.stack([long, long], axis=1), rate, subtype="PCM_16")
    assert path.stat().st_size > 20e6
    return path


@pytest.fixture(scope="module")
def browser(fake_microphone):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_microphone}%noloop",
            ],
        )
        yield browser
        browser.close()


@contextmanager
def open_page(browser, server: str, **context_options) -> Iterator[Page]:
    context_options.setdefault("viewport", {"width": 1100, "height": 900})
    context = browser.new_context(base_url=server, **context_options)
    page = context.new_page()
    page.problems = []  # uncaught exceptions and console errors of the page
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))
    page.on(
        "console", lambda msg: msg.type == "error" and page.problems.append(f"console: {msg.text}")
    )
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser, server) -> Iterator[Page]:
    with open_page(browser, server) as page:
        yield page


def transcribe_sample(page: Page, testdata: Path) -> dict:
    """Upload the sample on a fresh page; answers the verbose_json the page was given."""
    page.goto("/ui/")

    def is_upload(response) -> bool:
        return response.request.method == "POST" and response.url.endswith(
            "/v1/audio/transcriptions"
        )

    with page.expect_response(is_upload, timeout=TRANSCRIBE_TIMEOUT_MS) as answer:
        page.set_input_files("#file", str(testdata / SAMPLE))
    expect(page.locator("#result")).to_be_visible(timeout=30_000)
    body = answer.value.json()
    assert len({s["speaker"] for s in body["segments"]}) >= 2, body["segments"]
    return body


def download(page: Page, fmt: str) -> str:
    with page.expect_download() as info:
        page.click(f"#exports [data-download={fmt}]")
    assert info.value.suggested_filename == f"sample.{fmt}"
    return Path(info.value.path()).read_text(encoding="utf-8")


def rename(page: Page, name_button: str, name: str) -> None:
    page.click(name_button)
    field = page.locator("input.rename")
    expect(field).to_be_focused()
    field.fill(name)
    field.press("Enter")
    expect(field).to_have_count(0)


def vtt_seconds(timestamp: str) -> float:
    """00:01:02.345 → 62.345 (webvtt-py's start_in_seconds drops the milliseconds)."""
    hours, minutes, seconds = timestamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def cue_speakers(srt_text: str) -> list[str]:
    return [cue.content.split(": ", 1)[0] for cue in srt.parse(srt_text)]


def test_root_redirects_to_the_page(page):
    page.goto("/")
    assert page.url.endswith("/ui/")
    expect(page.locator("h1")).to_have_text("speakerscribe")
    assert page.problems == []


def test_upload_shows_diarized_transcript_timeline_and_syncs_player(page, testdata, artifacts_dir):
    page.goto("/ui/")
    started = time.monotonic()
    page.set_input_files("#file", str(testdata / "pyannote/sample.wav"))
    expect(page.locator("#result")).to_be_visible(timeout=TRANSCRIBE_TIMEOUT_MS)
    elapsed = time.monotonic() - started
    expect(page.locator("#upload-error")).to_be_hidden()

    labels = set(page.locator("#transcript .speaker-label").all_inner_texts())
    assert len(labels) >= 2, labels
    text = page.locator("#transcript").inner_text()
    assert len(words_in(text)) >= 3, text

    blocks = page.locator("#lanes .block")
    assert blocks.count() >= 2
    colours = set(blocks.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)"))
    assert len(colours) >= 2, colours
    assert page.locator("#lanes .lane").count() == len(labels)

    # The player holds the uploaded file; clicking a word seeks there and highlights it.
    player = page.locator("#player")
    expect(player).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function("document.getElementById('player').readyState >= 1")
    word = page.locator("#transcript .seg").nth(1).locator(".word").first
    start = float(word.get_attribute("data-start"))
    word.click()
    page.wait_for_function(
        "t => Math.abs(document.getElementById('player').currentTime - t) < 1.0", arg=start
    )
    expect(page.locator("#transcript .seg").nth(1)).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator("#lanes .block.active")).to_have_count(1)
    page.locator("#player").evaluate("p => p.pause()")

    page.screenshot(path=str(artifacts_dir / "page-upload.png"), full_page=True)
    print(f"upload flow: transcript shown {elapsed:.1f} s after choosing the file")
    assert page.problems == []


def test_upload_error_is_shown(page):
    page.goto("/ui/")
    page.set_input_files(
        "#file",
        files=[{"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"this is not audio" * 10}],
    )
    error = page.locator("#upload-error")
    expect(error).to_be_visible(timeout=60_000)
    expect(error).to_contain_text("400")
    expect(page.locator("#result")).to_be_hidden()


def test_record_shows_live_captions(page, artifacts_dir):
    page.goto("/ui/")
    started = time.monotonic()
    page.click("#record")
    expect(page.locator("#stop")).to_be_enabled()
    final = page.locator("#captions .caption.final")
    expect(final.first).to_be_visible(timeout=FIRST_FINAL_TIMEOUT_MS)
    first_final = time.monotonic() - started
    ink = final.first.evaluate("e => getComputedStyle(e).color")
    assert ink == "rgb(17, 17, 17)", ink  # final text is black; partial text is grey
    # Let more of the 30 s sample through, until its words show up (or it has all played).
    deadline = started + 45
    while time.monotonic() < deadline and len(words_in(" ".join(final.all_inner_texts()))) < 3:
        page.wait_for_timeout(1000)
    page.click("#stop")
    expect(page.locator("#record")).to_be_enabled(timeout=30_000)
    expect(page.locator("#live-error")).to_be_hidden()

    finals = " ".join(final.all_inner_texts())
    assert len(words_in(finals)) >= 2, finals
    colours = page.locator("#captions .speaker-label").evaluate_all(
        "els => els.map(e => getComputedStyle(e).color)"
    )
    assert colours, "live segments carry speaker labels"
    page.screenshot(path=str(artifacts_dir / "page-record.png"), full_page=True)
    print(f"record flow: first final caption {first_final:.1f} s after Record")
    assert page.problems == []


def test_download_srt_vtt_txt_json_with_speaker_labels(page, testdata, artifacts_dir):
    body = transcribe_sample(page, testdata)
    speakers = [s["speaker"] for s in body["segments"]]

    srt_text = download(page, "srt")
    cues = list(srt.parse(srt_text))
    assert len(cues) == len(body["segments"]) >= 2
    assert cue_speakers(srt_text) == speakers
    assert all(cue.content.split(": ", 1)[1] for cue in cues), srt_text

    vtt_text = download(page, "vtt")
    captions = webvtt.from_string(vtt_text).captions
    assert [c.voice for c in captions] == speakers
    assert [c.text for c in captions] == [cue.content.split(": ", 1)[1] for cue in cues]
    vtt_times = [vtt_seconds(t) for c in captions for t in (c.start, c.end)]
    srt_times = [t.total_seconds() for cue in cues for t in (cue.start, cue.end)]
    assert vtt_times == pytest.approx(srt_times, abs=0.001)

    # Written in the browser, yet byte for byte what the server's own formatters write.
    from speakerscribe.formats import TranscriptionResult, to_srt, to_vtt
    from speakerscribe.types import Segment

    served = TranscriptionResult(
        duration=body["duration"],
        language=body["language"],
        segments=[
            Segment(
                id=s["id"],
                seek=s["seek"],
                start=s["start"],
                end=s["end"],
                text=s["text"],
                speaker=s["speaker"],
            )
            for s in body["segments"]
        ],
        diarized=True,
    )
    assert srt_text == to_srt(served)
    assert vtt_text == to_vtt(served)

    lines = download(page, "txt").splitlines()
    assert lines == [f"{s['speaker']}: {s['text'].strip()}" for s in body["segments"]]

    diarized = json.loads(download(page, "json"))
    assert [s["speaker"] for s in diarized["segments"]] == speakers
    assert {s["type"] for s in diarized["segments"]} == {"transcript.text.segment"}
    assert diarized["duration"] == body["duration"] and diarized["text"] == body["text"]

    page.screenshot(path=str(artifacts_dir / "page-download.png"), full_page=True)
    assert page.problems == []


def test_renamed_speakers_carry_into_transcript_downloads_and_copy(page, testdata, artifacts_dir):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    transcribe_sample(page, testdata)

    rename(page, "#legend .speaker-name[data-name-of=A]", "Alice")  # from the legend
    rename(page, "#transcript .speaker-name[data-name-of=B] >> nth=0", "Bob")  # from the transcript
    expect(page.locator("#legend .speaker-name")).to_have_text(["Alice", "Bob"])
    labels = set(page.locator("#transcript .speaker-label").all_inner_texts())
    assert labels == {"Alice", "Bob"}, labels
    assert page.locator("#lanes .lane").first.get_attribute("title") == "Alice"

    srt_text = download(page, "srt")
    assert "Alice:" in srt_text
    assert set(cue_speakers(srt_text)) == {"Alice", "Bob"}  # no "A:" or "B:" label left
    assert not re.search(r"^[AB]: ", srt_text, re.MULTILINE)
    voices = {c.voice for c in webvtt.from_string(download(page, "vtt")).captions}
    assert voices == {"Alice", "Bob"}
    assert {s["speaker"] for s in json.loads(download(page, "json"))["segments"]} == voices

    page.click("#copy")
    expect(page.locator("#export-status")).to_have_text("Copied.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == download(page, "txt")
    assert copied.startswith("Alice: ") and "\nBob: " in copied

    # Escape leaves a name as it was.
    page.click("#legend .speaker-name[data-name-of=A]")
    page.locator("input.rename").fill("Nobody")
    page.locator("input.rename").press("Escape")
    expect(page.locator("#legend .speaker-name").first).to_have_text("Alice")

    page.screenshot(path=str(artifacts_dir / "page-rename.png"), full_page=True)
    assert page.problems == []


def test_a_background_job_runs_to_the_end_and_shows_the_transcript(page, testdata, artifacts_dir):
    page.goto("/ui/")
    page.check("#as-job")
    with page.expect_request("**/v1/audio/transcriptions/jobs"):
        page.set_input_files("#file", str(testdata / SAMPLE))
    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#result")).to_be_visible(timeout=TRANSCRIBE_TIMEOUT_MS)
    expect(page.locator("#job")).to_have_attribute("data-status", "succeeded")
    expect(page.locator("#job-status")).to_contain_text("Done")
    assert page.locator("#job-progress").evaluate("bar => bar.value") == 1
    expect(page.locator("#upload-status")).to_contain_text("as a background job")

    labels = set(page.locator("#transcript .speaker-label").all_inner_texts())
    assert len(labels) >= 2, labels
    assert len(words_in(page.locator("#transcript").inner_text())) >= 3
    assert page.locator("#transcript .word").count() > 20  # word by word, as an upload
    assert page.locator("#lanes .lane").count() == len(labels)
    page.screenshot(path=str(artifacts_dir / "page-job-done.png"), full_page=True)
    assert page.problems == []


def test_phone_width_has_no_horizontal_scrolling(browser, server, testdata, artifacts_dir):
    phone = {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    }
    with open_page(browser, server, **phone) as page:
        transcribe_sample(page, testdata)
        page.click("#settings summary")  # its fields wrap too
        page.locator("#job").evaluate("job => { job.hidden = false; }")  # and the job panel
        assert page.evaluate("innerWidth") == 390
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways: {width} px wide"
        outside = page.evaluate(
            """selector => [...document.querySelectorAll(selector)]
                 .filter(e => e.offsetParent && e.type !== 'file')
                 .filter(e => { const r = e.getBoundingClientRect();
                                return r.left < -0.5 || r.right > innerWidth + 0.5; })
                 .map(e => e.id || e.className || e.tagName)""",
            "button, input, select, label, audio, progress, .seg, .legend-item, .axis span",
        )
        assert outside == [], outside
        font = page.locator("#transcript .word").first.evaluate("w => getComputedStyle(w).fontSize")
        assert float(font.removesuffix("px")) >= 14, font
        page.locator("#job").evaluate("job => { job.hidden = true; }")
        page.screenshot(path=str(artifacts_dir / "page-phone.png"), full_page=True)
        assert page.problems == []


def test_api_key_is_stored_and_sent_on_every_request_and_the_websocket(page):
    # Browsers set no headers on a WebSocket: record the subprotocols the page asks for.
    page.add_init_script(
        """window.wsProtocols = [];
        const NativeWebSocket = window.WebSocket;
        window.WebSocket = class extends NativeWebSocket {
          constructor(url, protocols) {
            super(url, protocols);
            window.wsProtocols.push(protocols ?? null);
          }
        };"""
    )
    page.goto("/ui/")
    page.click("#settings summary")
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Tab")
    assert page.evaluate("localStorage.getItem('speakerscribe.apiKey')") == API_KEY

    sent: list[tuple[str, str, str | None]] = []

    def record(request) -> None:
        if request.resource_type == "fetch" and "/v1/" in request.url:
            sent.append((request.method, request.url, request.headers.get("authorization")))

    page.on("request", record)
    with page.expect_request("**/v1/models"):
        page.reload()
    expect(page.locator("#api-key")).to_have_value(API_KEY)  # kept across visits

    not_audio = {"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"not audio" * 20}
    page.set_input_files("#file", files=[not_audio])  # a plain upload: 400
    expect(page.locator("#upload-error")).to_contain_text("400", timeout=60_000)
    page.check("#as-job")
    page.set_input_files("#file", files=[not_audio])  # a job: accepted, polled, failed
    expect(page.locator("#upload-error")).to_contain_text("job failed", timeout=60_000)

    page.click("#record")
    expect(page.locator("#live-status")).to_contain_text("Recording", timeout=30_000)
    page.click("#stop")
    expect(page.locator("#record")).to_be_enabled(timeout=30_000)
    expect(page.locator("#live-error")).to_be_hidden()
    protocols = page.evaluate("window.wsProtocols")
    assert protocols == [["realtime", f"openai-insecure-api-key.{API_KEY}"]], protocols

    routes = {(method, re.sub(r"/jobs/[^/]+$", "/jobs/{id}", url)) for method, url, _ in sent}
    base = page.url.removesuffix("/ui/")
    assert routes >= {
        ("GET", f"{base}/v1/models"),
        ("POST", f"{base}/v1/audio/transcriptions"),
        ("POST", f"{base}/v1/audio/transcriptions/jobs"),
        ("GET", f"{base}/v1/audio/jobs/{{id}}"),
    }, routes
    assert {key for _, _, key in sent} == {f"Bearer {API_KEY}"}, sent


def test_a_long_file_goes_through_the_jobs_api_with_progress_and_cancel(
    page, server, long_wav, artifacts_dir
):
    # Last in this file: a cancelled job's audio already at the diarizer is still diarized,
    # which would only hold up the uploads of the tests after it.
    page.goto("/ui/")
    expect(page.locator("#as-job")).not_to_be_checked()  # 23 MB: a job all the same
    page.set_input_files("#file", str(long_wav))
    expect(page.locator("#job")).to_be_visible(timeout=60_000)
    expect(page.locator("#upload-status")).to_contain_text("background job")
    job_id = page.wait_for_function(
        "document.getElementById('job').dataset.jobId", timeout=120_000
    ).json_value()

    # The bar fills as the audio is transcribed: it shows a fraction, then a larger one.
    progress = "document.getElementById('job-progress')"
    page.wait_for_function(
        f"{progress}.hasAttribute('value') && {progress}.value > 0",
        timeout=JOB_PROGRESS_TIMEOUT_MS,
    )
    first = page.locator("#job-progress").evaluate("bar => bar.value")
    page.wait_for_function(f"{progress}.value > {first}", timeout=JOB_PROGRESS_TIMEOUT_MS)
    expect(page.locator("#job-status")).to_contain_text("transcription")
    expect(page.locator("#job-status")).to_contain_text("%")
    page.screenshot(path=str(artifacts_dir / "page-job-progress.png"), full_page=True)

    page.click("#job-cancel")
    expect(page.locator("#job-status")).to_contain_text("Cancelled", timeout=60_000)
    expect(page.locator("#job")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#job-cancel")).to_be_hidden()
    expect(page.locator("#upload-status")).to_contain_text("cancelled")
    expect(page.locator("#upload-error")).to_be_hidden()
    expect(page.locator("#result")).to_be_hidden()
    state = requests.get(f"{server}/v1/audio/jobs/{job_id}", timeout=10).json()
    assert state["status"] == "cancelled" and state["progress"] < 1, state
    page.screenshot(path=str(artifacts_dir / "page-job-cancelled.png"), full_page=True)
    assert page.problems == []
