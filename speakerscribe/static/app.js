// speakerscribe's page: upload a file and see who said what and when, or caption the
// microphone live over the realtime WebSocket. Plain JavaScript, no build step, no CDN.
// Every API call is relative to this page (<prefix>/ui/ → <prefix>/v1/...), so the page
// works under any route prefix.
"use strict";

const API = {
  transcriptions: "../v1/audio/transcriptions",
  jobs: "../v1/audio/transcriptions/jobs",
  job: (id) => `../v1/audio/jobs/${encodeURIComponent(id)}`,
  models: "../v1/models",
  realtime: "../v1/realtime?intent=transcription",
};
const JOB_MIN_BYTES = 20e6; // files at least this big go through the jobs API...
const JOB_MIN_SECONDS = 600; // ... and so do files at least this long, when the browser can tell
const JOB_POLL_MS = 1000;
const JOB_POLL_RETRIES = 30; // consecutive failed polls (an ingress restarting) before giving up
const JOB_FINISHED = new Set(["succeeded", "failed", "cancelled"]);
const API_KEY_STORAGE = "speakerscribe.apiKey";
const PCM_RATE = 24000; // the realtime API's audio/pcm rate
const CHUNK_SAMPLES = PCM_RATE / 10; // one input_audio_buffer.append per 100 ms
const TURN_GAP_S = 2; // consecutive segments of one speaker closer than this read as one turn
const STOP_WAIT_MS = 3000; // after Stop: wait this long for the commit's answer
const STOP_WAIT_PENDING_MS = 15000; // ... or this long while committed speech is still transcribing
const PALETTE = [
  "#2563eb", "#ea580c", "#16a34a", "#c026d3", "#0891b2",
  "#ca8a04", "#7c3aed", "#db2777", "#4b5563", "#65a30d",
];

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- shared helpers

/** Colours for speaker labels, handed out in order of first appearance. */
function speakerColours() {
  const known = new Map();
  return (label) => {
    const key = label == null || label === "" ? "?" : String(label);
    if (!known.has(key)) {
      const n = known.size;
      known.set(key, n < PALETTE.length ? PALETTE[n] : `hsl(${(n * 137.5) % 360} 65% 45%)`);
    }
    return known.get(key);
  };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child != null) node.append(child);
  }
  return node;
}

function speakerLabel(label, colour) {
  return el("span", { class: "speaker-label", style: `--c:${colour}`, title: `speaker ${label}` }, label);
}

function clock(seconds) {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

function showError(box, message) {
  box.textContent = message;
  box.hidden = !message;
}

function apiKey() {
  return $("api-key").value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch() with the API key: every HTTP call of the page goes through here. */
function apiFetch(url, options = {}) {
  return fetch(url, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
}

/** The response if it is 2xx; else throws its error message (and points at the key on 401). */
async function ensureOk(response) {
  if (response.ok) return response;
  if (response.status === 401) revealApiKeyField();
  throw new Error(await errorMessage(response));
}

function revealApiKeyField() {
  $("settings").open = true;
  $("api-key").focus();
}

/** A promise that resolves after ms, or rejects with an AbortError when signal fires. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      },
      { once: true }
    );
  });
}

/** The message of an OpenAI error object, or the best text the response has. */
async function errorMessage(response) {
  const text = await response.text().catch(() => "");
  let message = text.trim();
  try {
    const body = JSON.parse(text);
    if (body && body.error) message = body.error.message || JSON.stringify(body.error);
  } catch (_) {
    // not JSON: keep the text
  }
  return `${response.status} ${response.statusText || ""}`.trim() + (message ? `: ${message}` : "");
}

// ---------------------------------------------------------------- settings

function initSettings() {
  const saved = localStorage.getItem(API_KEY_STORAGE);
  if (saved) $("api-key").value = saved;
  $("api-key").addEventListener("change", () => {
    if (apiKey()) localStorage.setItem(API_KEY_STORAGE, apiKey());
    else localStorage.removeItem(API_KEY_STORAGE);
    loadModels();
  });
  loadModels();
}

async function loadModels() {
  const select = $("model");
  try {
    const response = await apiFetch(API.models);
    if (!response.ok) return;
    const body = await response.json();
    const current = select.value;
    select.replaceChildren(el("option", { value: "" }, "default"));
    for (const model of body.data || []) select.append(el("option", { value: model.id }, model.id));
    select.value = current;
  } catch (_) {
    // the model list is a convenience; the default model works without it
  }
}

// ---------------------------------------------------------------- upload flow

const upload = {
  controller: null,
  objectUrl: null,
  ticker: null,
  job: null, // {id, cancelling} while a background job runs for this page
  result: null, // {fileName, duration, text, segments: [{id, start, end, text, speaker}]}
  names: new Map(), // speaker label → the name the user gave it
  words: [], // {start, end, el, seg} sorted by start
  segments: [], // {start, end, speaker, el, block}
  duration: 0,
  currentWord: null,
  currentSeg: null,
  raf: 0,
};

function initUpload() {
  const input = $("file");
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) transcribeFile(input.files[0]);
    input.value = ""; // so that choosing the same file again (say, as a job) starts again
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) transcribeFile(file);
  });
  $("job-cancel").addEventListener("click", cancelJob);

  const player = $("player");
  const tick = () => {
    syncTo(player.currentTime);
    upload.raf = player.paused ? 0 : requestAnimationFrame(tick);
  };
  player.addEventListener("play", () => {
    if (!upload.raf) upload.raf = requestAnimationFrame(tick);
  });
  for (const name of ["timeupdate", "seeked", "pause", "ended"]) {
    player.addEventListener(name, () => syncTo(player.currentTime));
  }
  $("timeline").addEventListener("click", (event) => {
    const box = event.currentTarget.getBoundingClientRect();
    const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
    seek(fraction * upload.duration);
  });
  $("transcript").addEventListener("click", (event) => {
    const name = event.target.closest(".speaker-name");
    if (name) return startRename(name);
    const target = event.target.closest("[data-start]");
    if (target) seek(parseFloat(target.dataset.start));
  });
  $("legend").addEventListener("click", (event) => {
    const name = event.target.closest(".speaker-name");
    if (name) startRename(name);
  });
  for (const button of document.querySelectorAll("[data-download]")) {
    button.addEventListener("click", () => downloadTranscript(button.dataset.download));
  }
  $("copy").addEventListener("click", copyTranscript);
}

function seek(seconds) {
  const player = $("player");
  if (!player.src || !Number.isFinite(seconds)) return;
  player.currentTime = seconds;
  syncTo(seconds);
  player.play().catch(() => {});
}

function setUploadStatus(text) {
  $("upload-status").textContent = text;
}

/** The request form of an upload, for the synchronous route and the jobs route alike. */
function transcriptionForm(file) {
  // verbose_json with word timestamps: segments and words, each with its speaker,
  // in one request (diarized_json has segments only).
  const form = new FormData();
  form.append("file", file, file.name || "audio");
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "segment");
  form.append("timestamp_granularities[]", "word");
  form.append("enable_speaker_diarization", "true");
  const model = $("model").value;
  const language = $("language").value.trim();
  const speakers = $("num-speakers").value.trim();
  if (model) form.append("model", model);
  if (language) form.append("language", language);
  if (speakers) form.append("num_speakers", speakers);
  return form;
}

/** The media's length in seconds as the browser reads it, or null (unknown, or slow to say). */
function mediaDuration(file, timeoutMs = 3000) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const probe = document.createElement("audio");
    const done = (seconds) => {
      clearTimeout(timer);
      probe.removeAttribute("src");
      probe.load();
      URL.revokeObjectURL(url);
      resolve(Number.isFinite(seconds) ? seconds : null);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    probe.preload = "metadata";
    probe.addEventListener("loadedmetadata", () => done(probe.duration), { once: true });
    probe.addEventListener("error", () => done(null), { once: true });
    probe.src = url;
  });
}

/** Long files go through the jobs API: one long request would hold a connection for minutes. */
async function isLongFile(file) {
  if (file.size >= JOB_MIN_BYTES) return true;
  const seconds = await mediaDuration(file);
  return seconds != null && seconds >= JOB_MIN_SECONDS;
}

/** A new file replaces whatever the page was doing: the old request or job is dropped. */
function abandonCurrentUpload() {
  if (upload.controller) upload.controller.abort();
  upload.controller = null;
  if (upload.job && !upload.job.cancelling) {
    apiFetch(`${API.job(upload.job.id)}/cancel`, { method: "POST" }).catch(() => {});
  }
  upload.job = null;
  clearInterval(upload.ticker);
}

async function transcribeFile(file) {
  abandonCurrentUpload();
  const controller = new AbortController();
  upload.controller = controller;
  showError($("upload-error"), "");
  $("result").hidden = true;
  $("job").hidden = true;
  const began = performance.now();
  const mb = (file.size / 1e6).toFixed(1);
  const asked = $("as-job").checked;
  setUploadStatus(`Reading ${file.name} (${mb} MB)…`);
  const asJob = asked || (await isLongFile(file));
  if (controller !== upload.controller) return; // another file was chosen meanwhile
  const how = !asJob ? "" : asked ? " as a background job" : " as a background job (a long file)";
  const tickStatus = () => {
    const seconds = Math.round((performance.now() - began) / 1000);
    setUploadStatus(`Transcribing ${file.name} (${mb} MB)${how}… ${seconds} s`);
  };
  tickStatus();
  upload.ticker = setInterval(tickStatus, 1000);

  try {
    const body = asJob
      ? await transcribeAsJob(file, controller.signal)
      : await transcribeNow(file, controller.signal);
    if (controller !== upload.controller) return;
    renderResult(body, file);
    const seconds = ((performance.now() - began) / 1000).toFixed(1);
    const speakerCount = new Set(upload.segments.map((s) => s.speaker)).size;
    setUploadStatus(
      `${file.name}: ${clock(upload.duration)} of audio, ${speakerCount} speaker(s), ` +
        `transcribed in ${seconds} s${asJob ? " as a background job" : ""}`
    );
  } catch (error) {
    if (error.name === "AbortError" || controller !== upload.controller) return;
    setUploadStatus(error.name === "JobCancelled" ? `${file.name}: cancelled.` : "");
    if (error.name !== "JobCancelled") showError($("upload-error"), error.message || String(error));
  } finally {
    if (controller === upload.controller) {
      clearInterval(upload.ticker);
      upload.controller = null;
      upload.job = null;
    }
  }
}

async function transcribeNow(file, signal) {
  const response = await apiFetch(API.transcriptions, {
    method: "POST",
    body: transcriptionForm(file),
    signal,
  });
  return (await ensureOk(response)).json();
}

// ---------------------------------------------------------------- background jobs

/** Submit the upload as a job, poll it to the end, and answer its verbose_json result. */
async function transcribeAsJob(file, signal) {
  showJob({ status: "uploading", progress: 0 });
  const submitted = await apiFetch(API.jobs, { method: "POST", body: transcriptionForm(file), signal });
  let job = await (await ensureOk(submitted)).json();
  upload.job = { id: job.id, cancelling: false };
  showJob(job);
  let failures = 0;
  while (!JOB_FINISHED.has(job.status)) {
    await sleep(JOB_POLL_MS, signal);
    try {
      job = await (await ensureOk(await apiFetch(API.job(job.id), { signal }))).json();
      failures = 0;
    } catch (error) {
      // a restarting ingress answers 5xx or nothing for a few seconds; the job lives on
      if (error.name === "AbortError" || ++failures > JOB_POLL_RETRIES) throw error;
      continue;
    }
    showJob(job);
  }
  if (job.status === "cancelled") {
    const cancelled = new Error("the job was cancelled");
    cancelled.name = "JobCancelled";
    throw cancelled;
  }
  if (job.status === "failed") {
    const error = job.error || {};
    throw new Error(`The job failed: ${error.message || JSON.stringify(error)}`);
  }
  // verbose_json, as the job was submitted: words and segments with speakers, like an upload
  const result = await apiFetch(`${API.job(job.id)}/result?response_format=verbose_json`, { signal });
  return (await ensureOk(result)).json();
}

const JOB_STATUS_TEXT = {
  uploading: "Uploading",
  queued: "Queued",
  running: "Running",
  cancelling: "Cancelling",
  succeeded: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
};

/** The job panel: a progress bar (indeterminate until audio is being transcribed), the status
 *  and stage, and Cancel while the job can still be stopped. */
function showJob(job) {
  $("job").hidden = false;
  $("job").dataset.status = job.status;
  $("job").dataset.jobId = job.id || "";
  const bar = $("job-progress");
  const progress = Number(job.progress) || 0;
  if (progress > 0 || JOB_FINISHED.has(job.status)) bar.value = progress;
  else bar.removeAttribute("value"); // indeterminate: uploading, queued, decoding
  const parts = [JOB_STATUS_TEXT[job.status] || job.status];
  if (job.stage && !JOB_FINISHED.has(job.status) && job.stage !== "queued") parts.push(job.stage);
  if (progress > 0) parts.push(`${Math.round(progress * 100)}%`);
  if (job.id) parts.push(`job ${job.id}`);
  $("job-status").textContent = parts.join(" · ");
  const cancellable = job.id && (job.status === "queued" || job.status === "running");
  $("job-cancel").hidden = !cancellable && job.status !== "cancelling";
  $("job-cancel").disabled = !cancellable || Boolean(upload.job && upload.job.cancelling);
}

async function cancelJob() {
  const job = upload.job;
  if (!job || job.cancelling) return;
  job.cancelling = true;
  $("job-cancel").disabled = true;
  try {
    const response = await ensureOk(await apiFetch(`${API.job(job.id)}/cancel`, { method: "POST" }));
    if (upload.job === job) showJob(await response.json()); // the poll loop sees it to the end
  } catch (error) {
    job.cancelling = false;
    $("job-cancel").disabled = false;
    showError($("upload-error"), `Could not cancel: ${error.message || error}`);
  }
}

// ---------------------------------------------------------------- result view

/** Words grouped under the segment they belong to (by time; both lists are in order). */
function wordsBySegment(segments, words) {
  const groups = segments.map(() => []);
  let w = 0;
  segments.forEach((segment, i) => {
    const next = segments[i + 1];
    const boundary = next ? (segment.end + next.start) / 2 : Infinity;
    while (w < words.length && (words[w].start + words[w].end) / 2 < boundary) {
      groups[i].push(words[w]);
      w += 1;
    }
  });
  return groups;
}

function displayName(speaker) {
  return upload.names.get(speaker) || speaker;
}

/** A speaker's name as a button: clicking it renames the speaker (see startRename). */
function speakerNameButton(speaker, colour, extraClass = "") {
  return el(
    "button",
    {
      type: "button",
      class: `speaker-label speaker-name ${extraClass}`.trim(),
      style: `--c:${colour}`,
      title: `speaker ${speaker}: click to rename`,
      "data-name-of": speaker,
    },
    displayName(speaker)
  );
}

function renderResult(body, file) {
  const colourOf = speakerColours();
  const segments = (body.segments || []).filter((s) => s.end >= s.start);
  const words = (body.words || []).filter((w) => w.end >= w.start);
  const duration =
    body.duration || Math.max(0, ...segments.map((s) => s.end), ...words.map((w) => w.end)) || 1;
  upload.duration = duration;
  upload.words = [];
  upload.segments = [];
  upload.currentWord = null;
  upload.currentSeg = null;
  upload.names = new Map();

  // Player.
  if (upload.objectUrl) URL.revokeObjectURL(upload.objectUrl);
  upload.objectUrl = URL.createObjectURL(file);
  const player = $("player");
  player.src = upload.objectUrl;

  // Transcript: consecutive segments of one speaker make one turn; one span per word.
  const transcript = $("transcript");
  transcript.replaceChildren();
  const groups = wordsBySegment(segments, words);
  const exported = [];
  let turn = null;
  segments.forEach((segment, i) => {
    const known = segment.speaker ?? (groups[i][0] && groups[i][0].speaker) ?? null;
    exported.push({ id: segment.id ?? i, start: segment.start, end: segment.end, text: segment.text || "", speaker: known });
    const speaker = known ?? "?";
    const colour = colourOf(speaker);
    if (!turn || turn.speaker !== speaker || segment.start - turn.end > TURN_GAP_S) {
      const text = el("div", { class: "text" });
      const node = el(
        "div",
        { class: "seg", style: `--c:${colour}`, "data-speaker": speaker },
        el("div", { class: "meta", "data-start": segment.start }, speakerNameButton(speaker, colour), clock(segment.start)),
        text
      );
      transcript.append(node);
      turn = { speaker, end: segment.end, el: node, text };
    } else {
      turn.text.append(" ");
    }
    turn.end = Math.max(turn.end, segment.end);
    const entry = { start: segment.start, end: segment.end, speaker, el: turn.el, block: null };
    if (groups[i].length) {
      groups[i].forEach((word, k) => {
        const span = el("span", { class: "word", "data-start": word.start }, word.word.trim());
        turn.text.append(span, k + 1 < groups[i].length ? " " : "");
        upload.words.push({ start: word.start, end: word.end, el: span, seg: entry });
      });
    } else {
      turn.text.append(el("span", { class: "word", "data-start": segment.start }, (segment.text || "").trim()));
    }
    upload.segments.push(entry);
  });
  if (!segments.length) {
    transcript.append(el("p", { class: "status" }, body.text ? body.text : "No speech found in this file."));
  }
  upload.words.sort((a, b) => a.start - b.start);
  upload.result = { fileName: file.name || "transcript", duration, text: body.text || "", segments: exported };

  // Timeline: one lane per speaker, a coloured block per segment.
  const speakers = [...new Set(upload.segments.map((s) => s.speaker))];
  const lanes = $("lanes");
  lanes.replaceChildren();
  const laneOf = new Map();
  for (const speaker of speakers) {
    const lane = el("div", { class: "lane", "data-speaker": speaker });
    laneOf.set(speaker, lane);
    lanes.append(lane);
  }
  for (const entry of upload.segments) {
    const left = (100 * entry.start) / duration;
    const width = (100 * (entry.end - entry.start)) / duration;
    entry.block = el("div", {
      class: "block",
      style: `left:${left}%;width:${width}%;background:${colourOf(entry.speaker)}`,
      "data-speaker": entry.speaker,
    });
    laneOf.get(entry.speaker).append(entry.block);
  }
  $("legend").replaceChildren(
    ...speakers.map((speaker) =>
      el(
        "span",
        { class: "legend-item" },
        el("span", { class: "swatch", style: `background:${colourOf(speaker)}` }),
        speakerNameButton(speaker, colourOf(speaker))
      )
    )
  );
  refreshSpeakerNames();
  renderAxis(duration);
  $("export-status").textContent = "";
  $("result").hidden = false;
  transcript.scrollTop = 0;
  syncTo(0);
}

function renderAxis(duration) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  const step = steps.find((s) => duration / s <= 10) || 7200;
  const axis = $("axis");
  axis.replaceChildren();
  for (let t = 0; t <= duration + 1e-6; t += step) {
    const label = t >= 60 ? `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}` : `${t}s`;
    // a label at the right edge is right-aligned, so it never sticks out of the page
    const atEnd = t > 0 && t / duration > 0.95;
    axis.append(el("span", { class: atEnd ? "end" : "", style: `left:${(100 * t) / duration}%` }, label));
  }
}

// ---------------------------------------------------------------- rename speakers

/** Swap a speaker's name for a text field; Enter (or leaving it) renames, Escape keeps it. */
function startRename(button) {
  const speaker = button.dataset.nameOf;
  const input = el("input", {
    class: "rename",
    value: displayName(speaker),
    size: Math.max(6, displayName(speaker).length + 2),
    maxLength: 60,
    "aria-label": `Name for speaker ${speaker}`,
    autocomplete: "off",
  });
  let finished = false;
  const finish = (rename) => {
    if (finished) return;
    finished = true;
    input.replaceWith(button); // back in the page first, so that the rename reaches it too
    if (rename) renameSpeaker(speaker, input.value);
    button.focus();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  input.addEventListener("click", (event) => event.stopPropagation()); // no seek under it
  button.replaceWith(input);
  input.focus();
  input.select();
}

function renameSpeaker(speaker, name) {
  const cleaned = name.trim().replace(/\s+/g, " ");
  if (!cleaned || cleaned === speaker) upload.names.delete(speaker);
  else upload.names.set(speaker, cleaned);
  refreshSpeakerNames();
}

/** Every place a speaker's name shows (legend, transcript, timeline tooltips) follows renames. */
function refreshSpeakerNames() {
  for (const node of $("result").querySelectorAll("[data-name-of]")) {
    node.textContent = displayName(node.dataset.nameOf);
  }
  for (const lane of $("lanes").children) lane.title = displayName(lane.dataset.speaker);
  for (const entry of upload.segments) {
    entry.block.title = `${displayName(entry.speaker)}: ${clock(entry.start)}–${clock(entry.end)}`;
  }
}

// ---------------------------------------------------------------- downloads and copy

/** The result's segments with the user's names in place of the speaker labels. */
function namedSegments() {
  return upload.result.segments.map((s) => ({
    ...s,
    text: s.text.trim(),
    speaker: s.speaker == null ? null : displayName(s.speaker),
  }));
}

function pad(n, width = 2) {
  return String(n).padStart(width, "0");
}

/** HH:MM:SS + separator + milliseconds, rounded half up as the server's srt and webvtt writers do. */
function cueTime(seconds, separator) {
  const millis = Math.round(Math.max(0, seconds) * 1000);
  const h = Math.floor(millis / 3_600_000);
  const m = Math.floor((millis % 3_600_000) / 60_000);
  const sec = Math.floor((millis % 60_000) / 1000);
  return `${pad(h)}:${pad(m)}:${pad(sec)}${separator}${pad(millis % 1000, 3)}`;
}

function escapeVtt(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** SRT as the server writes it: cues numbered from 1, text as "Alice: …". */
function toSrt(segments) {
  return segments
    .map((s, i) => {
      const text = s.text.replace(/\n\s*\n/g, "\n");
      const content = s.speaker ? `${s.speaker}: ${text}` : text;
      return `${i + 1}\n${cueTime(s.start, ",")} --> ${cueTime(Math.max(s.end, s.start), ",")}\n${content}\n\n`;
    })
    .join("");
}

/** WebVTT as the server writes it: the speaker as a voice span, "<v Alice>…". */
function toVtt(segments) {
  const cues = segments.map((s) => {
    const text = escapeVtt(s.text.replace(/\n\s*\n/g, "\n"));
    const content = s.speaker ? `<v ${escapeVtt(s.speaker)}>${text}` : text;
    return `${cueTime(s.start, ".")} --> ${cueTime(Math.max(s.end, s.start), ".")}\n${content}`;
  });
  return `${["WEBVTT", ...cues].join("\n\n")}\n`;
}

/** Plain text, one line per segment: "Alice: …". */
function toTxt(segments) {
  return segments.map((s) => (s.speaker ? `${s.speaker}: ${s.text}` : s.text)).join("\n") + "\n";
}

/** diarized_json's shape, with the user's names as the speakers. */
function toDiarizedJson(segments) {
  const body = {
    task: "transcribe",
    duration: upload.result.duration,
    text: upload.result.text,
    segments: segments.map((s) => ({
      type: "transcript.text.segment",
      id: typeof s.id === "number" ? `seg_${s.id}` : String(s.id),
      start: s.start,
      end: s.end,
      text: s.text,
      speaker: s.speaker ?? displayName("A"),
    })),
    usage: { type: "duration", seconds: upload.result.duration },
  };
  return `${JSON.stringify(body, null, 2)}\n`;
}

const EXPORTS = {
  srt: { render: toSrt, type: "application/x-subrip" },
  vtt: { render: toVtt, type: "text/vtt" },
  txt: { render: toTxt, type: "text/plain" },
  json: { render: toDiarizedJson, type: "application/json" },
};

function downloadName(format) {
  const base = upload.result.fileName.replace(/\.[^./\\]+$/, "") || "transcript";
  return `${base}.${format}`;
}

function downloadTranscript(format) {
  if (!upload.result) return;
  const { render, type } = EXPORTS[format];
  const blob = new Blob([render(namedSegments())], { type: `${type};charset=utf-8` });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: downloadName(format), hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has long started by then
}

async function copyTranscript() {
  if (!upload.result) return;
  const text = toTxt(namedSegments());
  const status = $("export-status");
  try {
    await writeClipboard(text);
    status.textContent = "Copied.";
  } catch (error) {
    status.textContent = `Could not copy: ${error.message || error}`;
  }
}

/** The async clipboard needs a secure context (https or localhost); else the old way. */
async function writeClipboard(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return;
    } catch (_) {
      // permission refused: try the old way below
    }
  }
  const area = el("textarea", { value: text, readOnly: true, style: "position:fixed;top:0;left:0;opacity:0" });
  document.body.append(area);
  area.select();
  const copied = document.execCommand("copy");
  area.remove();
  if (!copied) throw new Error("the browser refused");
}

/** Last index with item.start <= t, or -1. */
function lastStartingBefore(items, t) {
  let lo = 0;
  let hi = items.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (items[mid].start <= t) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

function syncTo(t) {
  if (!upload.duration) return;
  $("playhead").style.left = `${Math.min(100, (100 * t) / upload.duration)}%`;

  const w = lastStartingBefore(upload.words, t);
  let word = w >= 0 ? upload.words[w] : null;
  if (word) {
    const next = upload.words[w + 1];
    const until = Math.max(word.end, Math.min(next ? next.start : Infinity, word.end + 0.5));
    if (t > until) word = null;
  }
  if (word !== upload.currentWord) {
    if (upload.currentWord) upload.currentWord.el.classList.remove("current");
    if (word) word.el.classList.add("current");
    upload.currentWord = word;
  }

  const s = lastStartingBefore(upload.segments, t);
  let seg = s >= 0 ? upload.segments[s] : null;
  if (seg && t > seg.end + 0.3) seg = null;
  if (seg !== upload.currentSeg) {
    const before = upload.currentSeg;
    if (before) {
      before.block.classList.remove("active");
      if (!seg || seg.el !== before.el) before.el.classList.remove("active");
    }
    if (seg) {
      seg.block.classList.add("active");
      if (!before || before.el !== seg.el) {
        seg.el.classList.add("active");
        keepVisible($("transcript"), seg.el);
      }
    }
    upload.currentSeg = seg;
  }
}

/** Scroll a container (not the page) so that child is in view. */
function keepVisible(container, child) {
  const top = child.offsetTop;
  const bottom = top + child.offsetHeight;
  if (top < container.scrollTop) container.scrollTop = top;
  else if (bottom > container.scrollTop + container.clientHeight) {
    container.scrollTop = bottom - container.clientHeight;
  }
}

// ---------------------------------------------------------------- record flow

/**
 * Mono float samples at any rate → PCM16 at `outRate`, in chunks of `chunk` samples.
 * Averages the input samples that fall in each output sample when downsampling (a box
 * low-pass), interpolates linearly when upsampling. Also used inside the AudioWorklet,
 * through its source text, so it must stay self-contained.
 */
class Resampler {
  constructor(inRate, outRate, chunk) {
    this.step = inRate / outRate; // input samples per output sample
    this.chunk = chunk;
    this.out = new Int16Array(chunk);
    this.fill = 0;
    this.index = 0; // input samples consumed
    this.next = this.step >= 1 ? this.step : 0; // down: input count that ends the next output; up: its position
    this.sum = 0;
    this.count = 0;
    this.prev = 0;
    this.energy = 0;
  }

  push(samples) {
    const chunks = [];
    for (let i = 0; i < samples.length; i++) {
      const x = samples[i];
      if (this.step >= 1) {
        this.sum += x;
        this.count += 1;
        this.index += 1;
        if (this.index >= this.next) {
          this.emit(this.sum / this.count, chunks);
          this.sum = 0;
          this.count = 0;
          this.next += this.step;
        }
      } else {
        // outputs whose position lies in (index - 1, index]: between the previous sample and x
        while (this.next <= this.index) {
          const frac = this.next - (this.index - 1);
          this.emit(this.prev + (x - this.prev) * frac, chunks);
          this.next += this.step;
        }
        this.prev = x;
        this.index += 1;
      }
    }
    return chunks;
  }

  emit(value, chunks) {
    const v = Math.max(-1, Math.min(1, value));
    this.energy += v * v;
    this.out[this.fill++] = v < 0 ? v * 0x8000 : v * 0x7fff;
    if (this.fill === this.chunk) {
      chunks.push({ pcm: this.out, level: Math.sqrt(this.energy / this.chunk) });
      this.out = new Int16Array(this.chunk);
      this.fill = 0;
      this.energy = 0;
    }
  }

  flush() {
    const rest = this.out.slice(0, this.fill);
    this.fill = 0;
    this.energy = 0;
    return rest;
  }
}

const WORKLET_SOURCE = `${Resampler.toString()}
class PcmCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, ${PCM_RATE}, ${CHUNK_SAMPLES});
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        const pcm = this.resampler.flush();
        this.port.postMessage({ pcm, flushed: true }, [pcm.buffer]);
      }
    };
  }
  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      let mono = channels[0];
      if (channels.length > 1) {
        mono = new Float32Array(channels[0].length);
        for (const channel of channels) for (let i = 0; i < mono.length; i++) mono[i] += channel[i] / channels.length;
      }
      for (const chunk of this.resampler.push(mono)) {
        this.port.postMessage(chunk, [chunk.pcm.buffer]);
      }
    }
    return true;
  }
}
registerProcessor("pcm-capture", PcmCapture);
`;

function base64(int16) {
  const bytes = new Uint8Array(int16.buffer, int16.byteOffset, int16.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function realtimeUrl() {
  const url = new URL(API.realtime, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

const live = {
  state: "idle", // idle | starting | recording | stopping
  ws: null,
  ready: false, // session.update sent
  queue: [], // PCM chunks captured before the socket was ready
  audio: null, // {context, stream, source, node, sink, flush()}
  items: new Map(), // item_id → {el, partial, segments, transcript, done, failed, committed}
  colourOf: speakerColours(),
  startedAt: 0,
  ticker: null,
  stopAt: 0,
  stopCheck: null,
  commitAnswered: false,
  closedByUs: false,
};

function initLive() {
  $("record").addEventListener("click", startRecording);
  $("stop").addEventListener("click", stopRecording);
  window.addEventListener("pagehide", () => {
    stopAudio();
    if (live.ws) live.ws.close();
  });
}

function setLiveState(state, status) {
  live.state = state;
  if (state === "idle") {
    for (const entry of live.items.values()) {
      if (!entry.done && !entry.partial.trim() && !entry.segments.length) entry.el.remove();
    }
  }
  const record = $("record");
  record.disabled = state !== "idle";
  record.classList.toggle("recording", state === "recording" || state === "starting");
  record.textContent = state === "recording" ? "● Recording" : "● Record";
  $("stop").disabled = !(state === "recording" || state === "starting");
  if (status !== undefined) $("live-status").textContent = status;
  if (state === "idle") {
    $("vad").hidden = true;
    $("level").value = 0;
  }
}

async function startRecording() {
  if (live.state !== "idle") return;
  showError($("live-error"), "");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    showError(
      $("live-error"),
      "This browser gives no microphone to this page: it needs a secure origin (https, or http://localhost)."
    );
    return;
  }
  setLiveState("starting", "Asking for the microphone…");
  live.queue = [];
  live.ready = false;
  live.commitAnswered = false;
  live.closedByUs = false;
  live.startedAt = 0;
  live.items = new Map();
  live.colourOf = speakerColours();
  $("captions").replaceChildren();
  try {
    live.audio = await startAudio(onPcm);
  } catch (error) {
    stopAudio();
    setLiveState("idle", "");
    showError($("live-error"), `Microphone: ${error.message || error.name || error}`);
    return;
  }
  if (live.state !== "starting") return; // stopped meanwhile
  setLiveState("starting", "Connecting…");
  openSocket();
}

async function startAudio(onChunk) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const context = new (window.AudioContext || window.webkitAudioContext)();
  await context.resume();
  const source = context.createMediaStreamSource(stream);
  const sink = context.createGain();
  sink.gain.value = 0; // keep the graph pulled without playing the microphone back
  sink.connect(context.destination);
  const audio = { context, stream, source, sink, node: null, flush: null };

  if (context.audioWorklet && window.AudioWorkletNode) {
    const url = URL.createObjectURL(new Blob([WORKLET_SOURCE], { type: "application/javascript" }));
    try {
      await context.audioWorklet.addModule(url);
    } finally {
      URL.revokeObjectURL(url);
    }
    const node = new AudioWorkletNode(context, "pcm-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
    let flushed = null;
    node.port.onmessage = (event) => {
      if (event.data.flushed) {
        if (event.data.pcm.length) onChunk(event.data.pcm, null);
        if (flushed) flushed();
      } else {
        onChunk(event.data.pcm, event.data.level);
      }
    };
    audio.flush = () =>
      new Promise((resolve) => {
        flushed = resolve;
        node.port.postMessage("flush");
        setTimeout(resolve, 500);
      });
    audio.node = node;
  } else {
    // Older browsers: ScriptProcessor on the main thread, same resampler.
    const resampler = new Resampler(context.sampleRate, PCM_RATE, CHUNK_SAMPLES);
    const node = context.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (event) => {
      for (const chunk of resampler.push(event.inputBuffer.getChannelData(0))) onChunk(chunk.pcm, chunk.level);
    };
    audio.flush = async () => {
      const rest = resampler.flush();
      if (rest.length) onChunk(rest, null);
    };
    audio.node = node;
  }
  source.connect(audio.node);
  audio.node.connect(sink);
  return audio;
}

function stopAudio() {
  const audio = live.audio;
  live.audio = null;
  if (!audio) return;
  for (const track of audio.stream.getTracks()) track.stop();
  try {
    audio.source.disconnect();
    if (audio.node) audio.node.disconnect();
  } catch (_) {
    // already disconnected
  }
  audio.context.close().catch(() => {});
}

function onPcm(pcm, level) {
  if (level != null) $("level").value = Math.min(1, level * 5);
  if (live.ready && live.ws && live.ws.readyState === WebSocket.OPEN) {
    send({ type: "input_audio_buffer.append", audio: base64(pcm) });
  } else {
    live.queue.push(pcm);
  }
}

function send(event) {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(event));
}

function openSocket() {
  const key = apiKey();
  let ws;
  try {
    // Browsers cannot set headers on a WebSocket; a key goes as a subprotocol, as OpenAI's does.
    ws = key ? new WebSocket(realtimeUrl(), ["realtime", `openai-insecure-api-key.${key}`]) : new WebSocket(realtimeUrl());
  } catch (error) {
    failLive(`Could not open ${realtimeUrl()}: ${error.message}`);
    return;
  }
  live.ws = ws;
  ws.onopen = () => {
    const input = {
      format: { type: "audio/pcm", rate: PCM_RATE },
      turn_detection: { type: "server_vad", threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 500 },
    };
    const model = $("model").value;
    const language = $("language").value.trim();
    if (model || language) {
      input.transcription = {};
      if (model) input.transcription.model = model;
      if (language) input.transcription.language = language;
    }
    send({
      type: "session.update",
      session: { type: "transcription", audio: { input }, enable_speaker_diarization: true },
    });
    live.ready = true;
    for (const pcm of live.queue.splice(0)) send({ type: "input_audio_buffer.append", audio: base64(pcm) });
    if (live.state === "starting") {
      live.startedAt = performance.now();
      setLiveState("recording", "Recording 0 s");
      clearInterval(live.ticker);
      live.ticker = setInterval(() => {
        if (live.state === "recording") {
          $("live-status").textContent = `Recording ${Math.round((performance.now() - live.startedAt) / 1000)} s`;
        }
      }, 1000);
    }
  };
  ws.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    handleServerEvent(event);
  };
  ws.onerror = () => {
    // the close event follows with the code; nothing more to learn here
  };
  ws.onclose = (event) => {
    if (live.ws !== ws) return;
    live.ws = null;
    live.ready = false;
    clearInterval(live.ticker);
    clearInterval(live.stopCheck);
    stopAudio();
    if (!live.closedByUs && live.state !== "stopping") {
      const reason = event.reason ? `: ${event.reason}` : "";
      if (event.code === 1008 && /api key/i.test(event.reason)) revealApiKeyField();
      showError(
        $("live-error"),
        event.code === 1006 && !live.startedAt
          ? `Could not connect to ${realtimeUrl()}`
          : `The connection closed (code ${event.code}${reason}).`
      );
    }
    setLiveState("idle", live.items.size ? "Stopped." : "");
  };
}

function failLive(message) {
  showError($("live-error"), message);
  live.closedByUs = true;
  stopAudio();
  if (live.ws) live.ws.close();
  clearInterval(live.ticker);
  setLiveState("idle", "");
}

function item(id) {
  const key = id || "_";
  let entry = live.items.get(key);
  if (!entry) {
    entry = {
      el: el("div", { class: "caption partial", "data-item": key }),
      partial: "",
      segments: [],
      transcript: null,
      done: false,
      failed: null,
      committed: false,
    };
    live.items.set(key, entry);
    const captions = $("captions");
    const atBottom = captions.scrollTop + captions.clientHeight >= captions.scrollHeight - 20;
    captions.append(entry.el);
    if (atBottom) captions.scrollTop = captions.scrollHeight;
  }
  return entry;
}

function renderItem(entry) {
  const node = entry.el;
  node.className = `caption ${entry.failed ? "failed" : entry.done ? "final" : "partial"}`;
  const lines = [];
  if (entry.failed) {
    lines.push(el("span", { class: "line" }, `(transcription failed: ${entry.failed})`));
  } else if (entry.segments.length) {
    for (const segment of entry.segments) {
      const speaker = segment.speaker ?? "?";
      lines.push(
        el(
          "span",
          { class: "line", "data-speaker": speaker, title: `${clock(segment.start)}–${clock(segment.end)}` },
          speakerLabel(speaker, live.colourOf(speaker)),
          ` ${(segment.text || "").trim()}`
        )
      );
    }
  } else {
    const text = entry.done ? entry.transcript || "" : entry.partial;
    if (text.trim()) lines.push(el("span", { class: "line" }, text.trim()));
  }
  if (entry.done && !lines.length) {
    node.remove(); // nothing was said in this turn
    return;
  }
  if (!lines.length) lines.push(el("span", { class: "line pending", title: "transcribing" }, "…"));
  node.replaceChildren(...lines);
  const captions = $("captions");
  captions.scrollTop = captions.scrollHeight;
}

function handleServerEvent(event) {
  const type = event.type || "";
  const prefix = "conversation.item.input_audio_transcription.";
  switch (type) {
    case "session.created":
    case "session.updated":
      break;
    case "input_audio_buffer.speech_started":
      $("vad").hidden = false;
      break;
    case "input_audio_buffer.speech_stopped":
      $("vad").hidden = true;
      break;
    case "input_audio_buffer.committed": {
      const entry = item(event.item_id);
      entry.committed = true;
      if (!entry.done) renderItem(entry);
      if (live.state === "stopping") live.commitAnswered = true;
      break;
    }
    case `${prefix}delta`: {
      const entry = item(event.item_id);
      if (!entry.done) {
        entry.partial += event.delta || "";
        renderItem(entry);
      }
      break;
    }
    case `${prefix}segment`: {
      const entry = item(event.item_id);
      const segment = { id: event.id, start: event.start, end: event.end, text: event.text, speaker: event.speaker };
      const same = entry.segments.findIndex((s) => s.id != null && s.id === segment.id);
      if (same >= 0) entry.segments[same] = segment;
      else entry.segments.push(segment);
      renderItem(entry);
      break;
    }
    case `${prefix}completed`: {
      const entry = item(event.item_id);
      entry.done = true;
      entry.committed = true;
      entry.transcript = event.transcript || "";
      renderItem(entry);
      break;
    }
    case `${prefix}failed`: {
      const entry = item(event.item_id);
      entry.done = true;
      entry.committed = true;
      entry.failed = (event.error && event.error.message) || "unknown error";
      renderItem(entry);
      break;
    }
    case "error": {
      const error = event.error || {};
      if (live.state === "stopping") live.commitAnswered = true;
      if (error.code === "input_audio_buffer_commit_empty" && live.state === "stopping") break;
      showError($("live-error"), error.message || JSON.stringify(error));
      break;
    }
    default:
      break;
  }
  if (live.state === "stopping") checkStopped();
}

async function stopRecording() {
  if (live.state !== "recording" && live.state !== "starting") return;
  const wasConnected = live.ready;
  setLiveState("stopping", "Finishing…");
  $("stop").disabled = true;
  $("record").disabled = true;
  clearInterval(live.ticker);
  if (live.audio && live.audio.flush) await live.audio.flush();
  stopAudio();
  if (!wasConnected || !live.ws || live.ws.readyState !== WebSocket.OPEN) {
    live.closedByUs = true;
    if (live.ws) live.ws.close();
    setLiveState("idle", "");
    return;
  }
  send({ type: "input_audio_buffer.commit" });
  live.stopAt = performance.now();
  clearInterval(live.stopCheck);
  live.stopCheck = setInterval(checkStopped, 250);
}

/** After Stop: close once the commit is answered and every committed turn is final. */
function checkStopped() {
  if (live.state !== "stopping") return;
  const entries = [...live.items.values()];
  const pending = entries.filter((e) => !e.done).length;
  const committedPending = entries.filter((e) => !e.done && e.committed).length;
  const waited = performance.now() - live.stopAt;
  const finished =
    (live.commitAnswered && pending === 0) ||
    (waited > STOP_WAIT_MS && committedPending === 0) ||
    waited > STOP_WAIT_PENDING_MS;
  if (!finished) return;
  clearInterval(live.stopCheck);
  live.closedByUs = true;
  if (live.ws) live.ws.close(1000, "done");
  setLiveState("idle", "Stopped.");
}

// ---------------------------------------------------------------- start

initSettings();
initUpload();
initLive();
