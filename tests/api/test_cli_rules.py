"""`fleetrun rules test`: an operator tries an event pattern on an event, with no server
(the CLI in process; that a usage error is exit code 2 from the real process is checked
once for every command in tests/e2e/test_cli_exits.py)."""

from __future__ import annotations

import json

import pytest

from tests.inprocess import run_cli


def cli(*args):
    """`fleetrun ARGS` with no server, no token and no login file: offline must not ask."""
    return run_cli(*args)


PATTERN = {
    "source": ["fleetrun"],
    "detail": {
        "status": [{"anything-but": "Success"}],
        "exit-code": [{"numeric": [">", 0]}],
        "node": {"tags": {"env": [{"prefix": "prod"}]}},
    },
}
FAILED = {
    "source": "fleetrun",
    "detail": {"status": "Failed", "exit-code": 2, "node": {"tags": {"env": "production"}}},
}
SUCCEEDED = {
    "source": "fleetrun",
    "detail": {"status": "Success", "exit-code": 0, "node": {"tags": {"env": "production"}}},
}


@pytest.fixture
def files(tmp_path):
    def write(name, content):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return str(path)

    return write


def test_a_matching_event_says_matches_and_exits_zero(files):
    done = cli(
        "rules", "test", "--pattern-file", files("p.json", PATTERN), "--event-file",
        files("e.json", FAILED),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("matches")
    assert done.stderr == ""


def test_a_non_matching_event_says_does_not_match_and_exits_zero_too(files):
    done = cli(
        "rules", "test", "--pattern-file", files("p.json", PATTERN), "--event-file",
        files("e.json", SUCCEEDED),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("does not match")


def test_json_output_is_just_the_answer(files):
    pattern = files("p.json", PATTERN)
    yes = cli(
        "rules",
        "test",
        "--pattern-file",
        pattern,
        "--event-file",
        files("a.json", FAILED),
        "--json",
    )
    no = cli(
        "rules",
        "test",
        "--json",
        "--pattern-file",
        pattern,
        "--event-file",
        files("b.json", SUCCEEDED),
    )
    assert (yes.returncode, no.returncode) == (0, 0)
    assert json.loads(yes.stdout) == {"match": True}
    assert json.loads(no.stdout) == {"match": False}


def test_yaml_files_are_read_as_well(files):
    pattern = files(
        "p.yaml", "source: [fleetrun]\ndetail:\n  status:\n    - anything-but: Success\n"
    )
    event = files("e.yml", "source: fleetrun\ndetail:\n  status: Failed\n")
    done = cli("rules", "test", "--pattern-file", pattern, "--event-file", event, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"match": True}


def test_both_files_are_required():
    done = cli("rules", "test", "--event-file", "e.json")
    assert done.returncode == 2  # a usage error, as click reports it
    assert "Missing option '--pattern-file'" in done.stderr


@pytest.mark.parametrize(
    ("pattern", "event", "message"),
    [
        (
            None,
            FAILED,
            "Cannot read the pattern file {dir}/missing.json: no such file or directory.",
        ),
        (
            PATTERN,
            None,
            "Cannot read the event file {dir}/missing.json: no such file or directory.",
        ),
        (
            '{"source": ["fleetrun"]',
            FAILED,
            "The pattern file {dir}/p.json is not valid JSON at line 1, column 24",
        ),
        (
            PATTERN,
            "{'source': 1}",
            "The event file {dir}/e.json is not valid JSON at line 1, column 2",
        ),
        (PATTERN, "[1, 2]", "The event file {dir}/e.json must hold one JSON object (an event)."),
        (
            {"detail": {"exit-code": [{"numeric": [">"]}]}},
            FAILED,
            'pattern field "detail.exit-code": numeric expects pairs of an operator and a number',
        ),
        (
            {"source": "fleetrun"},
            FAILED,
            'pattern field "source": expects a list of values like ["fleetrun"]',
        ),
        ({"s": [{"contains": "x"}]}, FAILED, 'unknown operator "contains"'),
        ({}, FAILED, "A pattern must name at least one field"),
    ],
)
def test_bad_files_and_bad_patterns_get_one_sentence_and_exit_one(
    tmp_path, files, pattern, event, message
):
    pattern_file = str(tmp_path / "missing.json") if pattern is None else files("p.json", pattern)
    event_file = str(tmp_path / "missing.json") if event is None else files("e.json", event)
    for extra in ((), ("--json",)):
        done = cli(
            "rules", "test", "--pattern-file", pattern_file, "--event-file", event_file, *extra
        )
        assert done.returncode == 2
        assert message.format(dir=tmp_path) in done.stderr
        assert done.stderr.startswith("fleetrun: ") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_yaml_date_must_be_quoted(files):
    event = files("e.yaml", "source: fleetrun\ntime: 2026-01-02\n")
    done = cli("rules", "test", "--pattern-file", files("p.json", PATTERN), "--event-file", event)
    assert done.returncode == 2
    assert "holds a value JSON cannot carry (a date or a time?): quote it." in done.stderr


def test_rules_is_listed_in_the_help():
    done = cli("--help")
    assert (
        "rules" in done.stdout and "Event rules: which events go to which targets." in done.stdout
    )
