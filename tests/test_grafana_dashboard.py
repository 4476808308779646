"""docs/grafana/aicredits.json is a dashboard Grafana can import, built on what the gateway exports:
every PromQL expression names only metrics a scrape of GET /metrics lists, and every exported
metric has a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.inproc import InProcessGateway

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana" / "aicredits.json"
METRIC = re.compile(r"\baicredits_[a-z0-9_]+\b")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
            "summary": ("_sum", "_count", "")}
PANEL_TYPES = {"row", "timeseries", "stat"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, fake_openai) -> dict[str, set[str]]:
    """family name -> the sample names it can have, as a fresh gateway's scrape lists them."""
    gw = InProcessGateway(tmp_path_factory.mktemp("dash"), {"OPENAI_BASE_URL": fake_openai.base_url,
                                                           "OPENAI_API_KEY": fake_openai.api_key}).start()
    try:
        r = gw.request("GET", "/metrics")
        assert r.status_code == 200
        text = r.text
    finally:
        gw.stop()
    return {f.name: {f.name + s for s in SUFFIXES[f.type]} for f in text_string_to_metric_families(text)}


def targets(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", ())]


def test_the_dashboard_is_an_importable_model(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"], p["title"]
            assert len({t["refId"] for t in p["targets"]}) == len(p["targets"])


def test_every_expression_names_exported_metrics(dashboard, exported):
    names = set().union(*exported.values())
    for title, expr in targets(dashboard):
        used = METRIC.findall(expr)
        assert used, (title, expr)
        assert set(used) <= names, (title, set(used) - names)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (title, expr)
        assert expr.count("[") == expr.count("]"), (title, expr)
        if "_bucket" in expr:
            assert "histogram_quantile(" in expr and "by (le" in expr, (title, expr)


def test_every_exported_metric_has_a_panel(dashboard, exported):
    used = {m for _, expr in targets(dashboard) for m in METRIC.findall(expr)}
    missing = [family for family, samples in exported.items() if not samples & used]
    assert missing == []


def test_the_issue_topics_each_have_a_panel(dashboard):
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("by status", "overhead p50 / p99", "upstream latency p50 / p99", "tokens", "inr charged",
                  "holds outstanding", "circuit breakers", "rate-limit refusals", "connections",
                  "wait for a connection"):
        assert topic in titles, topic
