"""The Grafana dashboard: its panels, and PromQL that names metrics the application exports."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

DASHBOARD = Path(__file__).resolve().parents[2] / "cluster/grafana/speakerscribe-dashboard.json"

REQUIRED_PANELS = {
    "Request rate by status code",
    "Error rate by status code",
    "Audio seconds processed",
    "Stage latency p50/p95",
    "Deployment processing latency p50/p95",
    "Transcriber batch size (mean/p95)",
    "Piece wait for its batch",
    "Whisper model call seconds",
    "Queue lengths per deployment",
    "Replicas per deployment",
}

# Words of PromQL that look like metric names but are not.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?")
_SAMPLE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric (sample) names a PromQL expression selects, as written: `x_bucket` stays."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # range and subquery durations
    expr = _GROUPING.sub(" ", expr)  # label lists of by/without/on/ignoring/group_*
    names = set()
    for match in _IDENTIFIER.finditer(expr):
        name, call = match.groups()
        if not call and name.lower() not in _KEYWORDS:  # `name(` is a function
            names.add(name)
    return names


def test_metric_names_parser():
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{stage=~"x|y", b="c(d)"}'
        "[$__rate_interval]))) / on (job) group_left(route) b_total offset 5m"
        " > bool 1e3 and c:rule{}"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c:rule"}


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL the dashboard runs: panel targets and template-variable queries."""
    queries = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        selector = re.fullmatch(r"\s*label_values\((.+),\s*\w+\s*\)\s*", query)
        queries.append(selector.group(1) if selector else query)
    return queries


def test_dashboard_panels_read_the_datasource_variable():
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    panels = dashboard["panels"]
    missing = REQUIRED_PANELS - {panel["title"] for panel in panels}
    assert not missing, missing
    uses_variable = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels:
        assert panel["type"] in {"timeseries", "heatmap"}, panel["title"]
        assert panel["datasource"] == uses_variable, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", uses_variable) == uses_variable, panel["title"]
            assert metric_names(target["expr"]), (panel["title"], target["expr"])
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == uses_variable, variable["name"]


def exported_sample_names(metrics_text: str) -> set[str]:
    names = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            names.add(_SAMPLE.match(line).group(0))
    return names


def test_dashboard_queries_name_exported_metrics(server, metrics_url, testdata):
    jfk = (testdata / "faster-whisper/jfk.flac").read_bytes()
    url = f"{server}/v1/audio/transcriptions"
    # Diarized: every stage reports (decode, chunking, transcription, diarization, merge).
    diarized = requests.post(
        url,
        files={"file": ("jfk.flac", jfk)},
        data={"response_format": "diarized_json"},
        timeout=600,
    )
    assert diarized.status_code == 200, diarized.text
    plain = requests.post(url, files={"file": ("jfk.flac", jfk)}, timeout=600)
    assert plain.status_code == 200, plain.text
    # Serve's error counter has no series until an error response.
    bad = requests.post(url, files={"file": ("noise.wav", b"not audio")}, timeout=600)
    assert 400 <= bad.status_code < 500, bad.text

    wanted: dict[str, set[str]] = {}
    for expr in dashboard_queries(load_dashboard()):
        for name in metric_names(expr):
            wanted.setdefault(name, set()).add(expr)
    stages = {f'stage="{s}"' for s in ("decode", "transcription", "diarization", "merge")}

    exported: set[str] = set()
    text = ""
    deadline = time.monotonic() + 90  # Ray exports every ~10 s; a busy machine is slower
    while True:
        text = requests.get(metrics_url, timeout=10).text
        exported = exported_sample_names(text)
        if wanted.keys() <= exported and all(s in text for s in stages):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(3)
    missing = {name: sorted(wanted[name]) for name in wanted.keys() - exported}
    assert not missing, json.dumps(missing, indent=2)
    assert all(s in text for s in stages), [s for s in stages if s not in text]
