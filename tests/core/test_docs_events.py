"""The event patterns and events the docs show are real: a reader who copies one gets a
rule that can match, and the example event has the detail-type and fields fleetrun
emits (a pattern that named a detail-type no event has once sat in docs/events.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fleetrun.core import delivery, eventshapes, patterns
from fleetrun.core.events import INVOCATION_STATUS

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.S)
_HEREDOC = re.compile(r"<<'JSON'\n(.*?)\nJSON\n", re.S)


def _shown(page: Path) -> list[dict]:
    """Every JSON object a page shows, in a json block or a here-document."""
    text = page.read_text()
    found = []
    for block in [*_JSON_BLOCK.findall(text), *_HEREDOC.findall(text)]:
        try:
            value = json.loads(block)
        except ValueError:
            continue  # elided examples ("5f0c...") are prose, not input
        if isinstance(value, dict):
            found.append(value)
    return found


def _is_pattern(value: dict) -> bool:
    return isinstance(value.get("detail-type"), list) or isinstance(value.get("source"), list)


def _is_event(value: dict) -> bool:
    return isinstance(value.get("detail-type"), str) and "detail" in value


def test_every_pattern_in_the_docs_is_valid_and_can_match():
    shown = [(page.name, p) for page in PAGES for p in _shown(page) if _is_pattern(p)]
    assert len(shown) >= 3  # events.md's example, failed.json and registered.json
    for name, pattern in shown:
        patterns.compile_pattern(pattern)
        assert delivery.pattern_warnings(pattern, _shape(pattern)) == [], (name, pattern)


def test_every_event_in_the_docs_has_a_real_detail_type_and_real_fields():
    shown = [e for page in PAGES for e in _shown(page) if _is_event(e)]
    assert shown
    for event in shown:
        shape = _shape(event)
        fields = eventshapes.detail_fields(shape)
        assert event["detail-type"] in fields
        assert set(event) == eventshapes.envelope_fields(shape) | {"detail"}
        assert set(event["detail"]) <= fields[event["detail-type"]]


def _shape(shown: dict) -> str:
    """SSM's shape for what names SSM's source, fleetrun's for the rest."""
    source = shown.get("source")
    named = source if isinstance(source, list) else [source]
    return eventshapes.AWS if eventshapes.AWS_SOURCE in named else eventshapes.FLEETRUN


def test_the_ssm_example_pattern_of_events_md_matches_its_ssm_example_event():
    shown = _shown(ROOT / "docs" / "events.md")
    event = next(e for e in shown if _is_event(e) and _shape(e) == eventshapes.AWS)
    example = next(p for p in shown if _is_pattern(p) and _shape(p) == eventshapes.AWS)
    assert patterns.compile_pattern(example).matches(event)


def test_the_example_pattern_of_events_md_matches_its_example_event():
    shown = _shown(ROOT / "docs" / "events.md")
    event = next(e for e in shown if _is_event(e))
    assert event["detail-type"] == INVOCATION_STATUS
    example = next(p for p in shown if _is_pattern(p) and "detail-type" in p)
    assert patterns.compile_pattern(example).matches(event)
    assert not patterns.compile_pattern(example).matches(
        {**event, "detail": {**event["detail"], "status": "Success"}}
    )
