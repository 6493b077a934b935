"""The browser page at /ui/: upload and record flows in headless Chromium (Playwright).

Chromium is Debian's (`apt-get install chromium`), driven by the Playwright package's own
driver; no `playwright install`. The microphone is Chromium's fake capture device playing
the shared two-speaker sample.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
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


@pytest.fixture
def page(browser, server) -> Page:
    context = browser.new_context(base_url=server, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.problems = []  # uncaught exceptions and console errors of the page
    page.on("pageerror", lambda error: page.problems.append(f"pageerror: {error}"))
    page.on(
        "console", lambda msg: msg.type == "error" and page.problems.append(f"console: {msg.text}")
    )
    yield page
    context.close()


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
