"""Tags, durations, ids, documents and protocol frames."""

from __future__ import annotations

import pytest

from fleetrun.core import documents, protocol
from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.ids import is_node_id, new_node_id
from fleetrun.core.tags import parse_tag, parse_tags


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env=prod", ("env", "prod")),
        ("a=b=c", ("a", "b=c")),
        (" k = v ", ("k", "v")),
        ("k=", ("k", "")),
    ],
)
def test_parse_tag(text, expected):
    assert parse_tag(text) == expected


@pytest.mark.parametrize("text", ["env", "=prod", "bad key!=x", "k=va\nlue"])
def test_parse_tag_refuses_malformed(text):
    with pytest.raises(ValidationError):
        parse_tag(text)


def test_parse_tags_later_value_wins():
    assert parse_tags(["a=1", "b=2", "a=3"]) == {"a": "3", "b": "2"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("30d", 2592000), ("1.5h", 5400)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "10y", "-5m", "1 2h"])
def test_parse_duration_refuses_malformed(text):
    with pytest.raises(ValidationError):
        parse_duration(text)


def test_node_ids_have_ssm_shape():
    ids = {new_node_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(is_node_id(i) and len(i) == 19 for i in ids)


def test_builtin_shell_document_becomes_one_step():
    content = documents.BUILTIN_DOCUMENTS["RunShellScript"]
    params = documents.bind_parameters(content, {"commands": ["echo a", "echo b"]})
    [step] = documents.resolve_steps(content, params)
    assert step.action == "runShellScript"
    assert step.script == "echo a\necho b\n"
    assert step.working_directory is None
    assert "commands" not in step.env  # the script is not repeated in the environment


def test_document_parameters_are_checked():
    content = documents.BUILTIN_DOCUMENTS["RunShellScript"]
    with pytest.raises(ValidationError, match="'commands' is required"):
        documents.bind_parameters(content, {})
    with pytest.raises(ValidationError, match="'nope' is not defined"):
        documents.bind_parameters(content, {"commands": ["x"], "nope": ["y"]})


def test_substitution_keeps_lists_whole_and_embeds_text():
    params = {"words": ["a", "b"], "name": "x"}
    assert documents.substitute("{{ words }}", params) == ["a", "b"]
    assert (
        documents.substitute("say {{name}} and {{ missing }}", params) == "say x and {{ missing }}"
    )


def test_frames_round_trip_and_unknown_types_are_ignored():
    frame = protocol.Output(
        invocation_id="i", seq=3, step=0, stream="stdout", data=protocol.encode(b"\x00\xff")
    )
    parsed = protocol.parse(protocol.dump(frame))
    assert isinstance(parsed, protocol.Output)
    assert parsed.payload == b"\x00\xff"
    assert protocol.parse('{"type": "from-the-future", "x": 1}') is None
    # a newer peer's extra field is ignored, not refused
    assert isinstance(protocol.parse('{"type": "ping", "time": 1, "new": true}'), protocol.Ping)


@pytest.mark.parametrize("text", ["not json", "[]", '{"no": "type"}', '{"type": "ack"}'])
def test_unreadable_frames_raise(text):
    with pytest.raises(protocol.ProtocolError):
        protocol.parse(text)
