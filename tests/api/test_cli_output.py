"""`fleetrun`'s output formats (--output json|yaml|table|text, --json, --query), its
list shape (an array of the items), named profiles and shell completion, run as an
operator runs them: the real entry point in process against the real app."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from fleetrun.cli import main as cli_main
from fleetrun.sdk import Client
from tests.inprocess import BASE_URL, run_cli


@pytest.fixture
def config(tmp_path):
    """A login file of the test's own (none yet), so that no operator's file is read."""
    return tmp_path / "config.toml"


def cli(app, config, *args, env=None, token=True):
    return app.cli(*args, token=token, env={"FLEETRUN_CONFIG": str(config), **(env or {})})


def ok(done):
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- formats ---------------------------------------------------------------------------


def test_json_yaml_and_text_print_the_same_data_and_table_stays_the_human_view(app, config):
    nodes = app.enrol(2, tags={"env": "test"})
    as_json = json.loads(ok(cli(app, config, "nodes", "list", "--output", "json")))
    assert [n["name"] for n in as_json] == [n.name for n in nodes]
    assert json.loads(ok(cli(app, config, "nodes", "list", "--json"))) == as_json
    assert yaml.safe_load(ok(cli(app, config, "nodes", "list", "-o", "yaml"))) == as_json
    # yaml keeps the JSON's key order (id first), not sorted
    assert ok(cli(app, config, "nodes", "list", "-o", "yaml")).startswith("- id: n-")
    table = ok(cli(app, config, "nodes", "list"))
    assert "NAME" in table and "node01" in table and "{" not in table
    assert ok(cli(app, config, "nodes", "list", "-o", "table")) == table


def test_text_is_one_tab_separated_line_per_record_with_columns_in_key_order(app, config):
    nodes = app.enrol(2, tags={"env": "test"})
    lines = ok(cli(app, config, "nodes", "list", "-o", "text")).splitlines()
    # aws-cli's text: a record's scalars in the order of their keys, then its nested
    # objects on lines of their own that start with the key in capitals
    records = [line.split("\t") for line in lines if not line.startswith(("FACTS", "TAGS"))]
    keys = sorted(
        k
        for k, v in app.client.list_nodes()[0].model_dump().items()
        if not isinstance(v, dict | list)
    )
    assert [r[keys.index("id")] for r in records] == [n.node_id for n in nodes]
    assert [r[keys.index("name")] for r in records] == [n.name for n in nodes]
    assert all(len(r) == len(keys) for r in records)
    assert lines.count("TAGS\ttest") == 2
    # a query's list of lists: a line each; a list of scalars: a value a line
    ids = ok(cli(app, config, "nodes", "list", "-o", "text", "--query", "[].[name, id]"))
    assert ids.splitlines() == [f"{n.name}\t{n.node_id}" for n in nodes]
    names = ok(cli(app, config, "nodes", "list", "-o", "text", "--query", "[].name"))
    assert names == "node01\nnode02\n"
    assert "\x1b[" not in ids + names  # no colour


def test_text_keeps_a_value_with_tabs_and_line_breaks_on_its_line(app, config):
    app.client.create_principal("robot", description="line one\nline\ttwo")
    out = ok(cli(app, config, "principals", "list", "-o", "text", "--query", "[?name=='robot']"))
    assert len(out.splitlines()) == 1 and "line one\\nline\\ttwo" in out


def test_output_on_the_group_from_the_environment_and_from_the_profile(app, config):
    app.enrol(1)
    as_yaml = ok(cli(app, config, "-o", "yaml", "nodes", "list"))
    assert yaml.safe_load(as_yaml)[0]["name"] == "node01"
    assert ok(cli(app, config, "nodes", "list", env={"FLEETRUN_OUTPUT": "yaml"})) == as_yaml
    assert ok(cli(app, config, "nodes", "list", env={"FLEETRUN_OUTPUT": "YAML"})) == as_yaml
    # the flag wins over the environment; --json is --output json
    flagged = cli(app, config, "nodes", "list", "--json", env={"FLEETRUN_OUTPUT": "yaml"})
    assert json.loads(ok(flagged))[0]["name"] == "node01"
    config.write_text(f'server = "{BASE_URL}"\noutput = "yaml"\n')
    assert ok(cli(app, config, "nodes", "list")) == as_yaml
    wrong = cli(app, config, "nodes", "list", env={"FLEETRUN_OUTPUT": "xml"})
    assert wrong.returncode == 2 and "The output format 'xml'" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    bad_flag = cli(app, config, "nodes", "list", "-o", "xml")
    assert bad_flag.returncode == 2 and "xml" in bad_flag.stderr


def test_every_command_takes_the_output_options_offline_ones_too(tmp_path):
    made = run_cli("keys", "create", "ops", "--dir", str(tmp_path), "-o", "yaml")
    assert made.returncode == 0, made.stderr
    assert yaml.safe_load(made.stdout)["publisher"] == "ops"
    version = run_cli("version", "--local", "--output", "text", "--query", "cli")
    assert (
        version.returncode == 0
        and version.stdout.strip()
        == json.loads(run_cli("version", "--local", "--json").stdout)["cli"]
    )


# -- --query ---------------------------------------------------------------------------


def test_query_selects_from_the_json_data_in_every_format(app, config):
    nodes = app.enrol(3, tags={"env": "test"})
    names = [n.name for n in nodes]
    picked = ok(cli(app, config, "nodes", "list", "--query", "[].name", "--json"))
    assert json.loads(picked) == names
    assert (
        yaml.safe_load(ok(cli(app, config, "nodes", "list", "-o", "yaml", "--query", "[].name")))
        == names
    )
    count = ok(cli(app, config, "--query", "length(@)", "-o", "json", "nodes", "list"))
    assert json.loads(count) == 3


def test_query_with_table_output_prints_its_result_as_a_simple_table(app, config):
    nodes = app.enrol(2)
    table = ok(cli(app, config, "nodes", "list", "--query", "[].{node: name, id: id}"))
    header, _, *rows = table.splitlines()
    assert header.split() == ["node", "id"]
    assert [r.split() for r in rows] == [[n.name, n.node_id] for n in nodes]
    column = ok(cli(app, config, "nodes", "list", "--query", "[].name")).splitlines()
    assert [line.strip() for line in column[2:]] == ["node01", "node02"]
    assert ok(cli(app, config, "nodes", "list", "--query", "[0].name")) == "node01\n"


def test_the_query_examples_of_the_docs_work_as_written(app, config):
    """docs/cli.md, Output formats."""
    nodes = app.enrol(2, tags={"env": "test"})
    with app.connect(nodes[1]):
        online = cli(
            app, config, "nodes", "list", "--query", "[?ping_status=='Online'].name", "-o", "text"
        )
        assert ok(online) == "node02\n"
    table = ok(cli(app, config, "nodes", "list", "--query", "[].{name: name, env: tags.env}"))
    assert table.split()[:2] == ["name", "env"] and "node01  test" in table.replace("   ", "  ")
    failed = cli(
        app, config, "commands", "list", "--status", "Failed", "-o", "json", "--query", "length(@)"
    )
    assert ok(failed) == "0\n"
    sent = json.loads(ok(cli(app, config, "send", "--all", "--script", "true", "--json")))
    rows = cli(
        app,
        config,
        "invocations",
        "list",
        "--command",
        sent["id"],
        "-o",
        "text",
        "--query",
        "[].[node_name, status, exit_code]",
    )
    assert sorted(line.split("\t")[0] for line in ok(rows).splitlines()) == ["node01", "node02"]
    assert all(len(line.split("\t")) == 3 for line in ok(rows).splitlines())


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("[?", "is not a JMESPath expression"),
        ("nodes[.name", "is not a JMESPath expression"),
        ("sort_by(@, &tags)", "cannot be applied to this data"),
    ],
)
def test_a_bad_query_is_one_sentence_and_a_usage_error(app, config, expression, message):
    app.enrol(2)
    done = cli(app, config, "nodes", "list", "--query", expression)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetrun: ") and message in lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_a_malformed_query_is_refused_before_anything_is_sent(app, config):
    app.enrol(1)
    before = len(app.client.list_commands(limit=1000))
    done = cli(app, config, "send", "--all", "--script", "true", "--query", "id ||")
    assert done.returncode == 2 and "is not a JMESPath expression" in done.stderr
    assert len(app.client.list_commands(limit=1000)) == before


# -- lists: one shape ------------------------------------------------------------------


LISTS = [
    ["nodes", "list"],
    ["activations", "list"],
    ["commands", "list"],
    ["invocations", "list"],
    ["documents", "list"],
    ["groups", "list"],
    ["principals", "list"],
    ["tokens", "list"],
    ["policies", "list"],
    ["roles", "list"],
    ["audit", "list"],
    ["events", "list"],
    ["rules", "list"],
    ["channels", "list"],
    ["targets", "preview", "--all"],
]


@pytest.mark.parametrize("args", LISTS, ids=lambda a: " ".join(a))
def test_every_list_prints_an_array_of_its_items(app, config, args):
    nodes = app.enrol(2)
    ok(cli(app, config, "send", "--all", "--script", "true"))
    app.client.create_group("pair", node_ids=[n.node_id for n in nodes])
    app.client.create_channel("hook", target="email:ops@example.com")
    app.client.create_rule(
        "failures", pattern={"detail-type": ["x"]}, targets=["email:ops@example.com"]
    )
    found = json.loads(ok(cli(app, config, *args, "--json")))
    assert isinstance(found, list) and found and all(isinstance(i, dict) for i in found)
    as_yaml = yaml.safe_load(ok(cli(app, config, *args, "-o", "yaml")))
    assert isinstance(as_yaml, list) and as_yaml  # (the audit log grew meanwhile)
    assert as_yaml[-1].keys() == found[-1].keys()


def test_a_list_that_has_more_honours_limit_and_says_the_cursor_on_stderr(app, config):
    app.enrol(1)
    sent = [
        json.loads(ok(cli(app, config, "send", "--all", "--script", "true", "--json")))["id"]
        for _ in range(3)
    ]
    first = cli(app, config, "commands", "list", "--limit", "2", "--json")
    assert [c["id"] for c in json.loads(ok(first))] == sent[::-1][:2]
    cursor = first.stderr.split("--cursor ")[1].split()[0]
    rest = cli(app, config, "commands", "list", "--limit", "2", "--cursor", cursor, "--json")
    assert [c["id"] for c in json.loads(ok(rest))] == sent[:1]
    invocations = json.loads(
        ok(cli(app, config, "invocations", "list", "--command", sent[0], "-o", "json"))
    )
    assert [i["command_id"] for i in invocations] == [sent[0]]


# -- profiles --------------------------------------------------------------------------


def test_login_saves_named_profiles_next_to_the_default_one(app, config):
    app.enrol(1)
    app.client.create_principal("reader")
    app.client.attach("reader", role="Reader")
    reader = app.client.create_token("reader").token
    ok(cli(app, config, "login", "--server", app.url, "--token", app.token, token=False))
    saved = cli(
        app, config, "login", "--profile", "ro", "--server", app.url, "--token", reader, token=False
    )
    assert "profile ro" in ok(saved)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    def whoami(*args, env=None):
        return json.loads(ok(cli(app, config, "whoami", "--json", *args, token=False, env=env)))[
            "principal"
        ]

    assert whoami() == "admin"
    assert whoami("--profile", "ro") == "reader"
    assert whoami(env={"FLEETRUN_PROFILE": "ro"}) == "reader"
    assert whoami("--profile", "default", env={"FLEETRUN_PROFILE": "ro"}) == "admin"
    # a named profile is taken whole: the environment's token is not sent to its server
    mixed = cli(app, config, "whoami", "--json", "--profile", "ro", token=True)
    assert json.loads(ok(mixed))["principal"] == "reader"
    # logging in again keeps the other profiles
    ok(cli(app, config, "login", "--server", app.url, "--token", app.token, token=False))
    assert whoami("--profile", "ro") == "reader"


def test_a_login_file_from_before_profiles_is_the_default_profile(app, config):
    config.write_text(f'server = "{app.url}"\ntoken = "{app.token}"\n')
    done = cli(app, config, "whoami", "--json", token=False)
    assert json.loads(ok(done))["principal"] == "admin"
    # adding a profile keeps the old keys where they were
    ok(
        cli(
            app,
            config,
            "login",
            "--profile",
            "two",
            "--server",
            app.url,
            "--token",
            app.token,
            token=False,
        )
    )
    assert json.loads(ok(cli(app, config, "whoami", "--json", token=False)))["principal"] == "admin"
    assert config.read_text().startswith(f'server = "{app.url}"')


def test_an_unknown_profile_is_one_sentence_that_says_how_to_make_it(app, config):
    config.write_text(f'server = "{app.url}"\n')
    done = cli(app, config, "nodes", "list", "--profile", "nope", token=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fleetrun: No profile 'nope' in {config}: create it with `fleetrun login --profile "
        "nope --server URL --token TOKEN`, or name another."
    ]


def test_logout_forgets_one_profile_and_keeps_the_others(app, config):
    ok(cli(app, config, "login", "--server", app.url, "--token", app.token, token=False))
    ok(
        cli(
            app,
            config,
            "login",
            "--profile",
            "ro",
            "--server",
            app.url,
            "--token",
            app.token,
            token=False,
        )
    )
    assert "profile ro removed" in ok(cli(app, config, "logout", "--profile", "ro"))
    gone = cli(app, config, "whoami", "--profile", "ro", token=False)
    assert gone.returncode == 2 and "No profile 'ro'" in gone.stderr
    assert json.loads(ok(cli(app, config, "whoami", "--json", token=False)))["principal"] == "admin"
    again = cli(app, config, "logout", "--profile", "ro")
    assert again.returncode == 0 and "Not logged in" in again.stderr
    assert "profile default removed" in ok(cli(app, config, "logout"))
    assert not config.exists()
    out = cli(app, config, "whoami", token=False)
    assert out.returncode == 3 and "needs an API token" in out.stderr


def test_the_sdk_client_takes_a_profile(app, config, monkeypatch):
    app.client.create_principal("reader")
    app.client.attach("reader", role="Reader")
    reader = app.client.create_token("reader").token
    ok(cli(app, config, "login", "--server", app.url, "--token", app.token, token=False))
    ok(
        cli(
            app,
            config,
            "login",
            "--profile",
            "ro",
            "--server",
            app.url,
            "--token",
            reader,
            token=False,
        )
    )
    monkeypatch.setenv("FLEETRUN_CONFIG", str(config))
    for name in ("FLEETRUN_SERVER", "FLEETRUN_TOKEN", "FLEETRUN_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert Client(http=app.http).whoami().principal == "admin"
    assert Client(profile="ro", http=app.http).whoami().principal == "reader"
    monkeypatch.setenv("FLEETRUN_PROFILE", "ro")
    assert Client(http=app.http).whoami().principal == "reader"


# -- completion ------------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script_of_each_shell(shell):
    done = run_cli("completion", shell)
    assert done.returncode == 0, done.stderr
    assert "_FLEETRUN_COMPLETE" in done.stdout and f"{shell}_complete" in done.stdout
    assert run_cli("completion", "tcsh").returncode == 2


def complete(app, monkeypatch, capsys, words, server=BASE_URL, config=os.devnull):
    """What bash completion offers for the command line `words` (the cursor at its end),
    computed by the real entry point as the script installed asks it to."""
    env = {
        "_FLEETRUN_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        "FLEETRUN_SERVER": server,
        "FLEETRUN_TOKEN": app.token,
        "FLEETRUN_CONFIG": str(config),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        cli_main.main([], http=app.http if server == BASE_URL else None)
    assert ended.value.code == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = [line for line in out.out.splitlines() if line]
    assert all(line.startswith("plain,") for line in lines), out
    return [line.split(",", 1)[1] for line in lines]


def test_completion_offers_commands_flags_and_live_node_and_document_names(
    app, monkeypatch, capsys
):
    nodes = app.enrol(2, prefix="web")
    app.enrol(1, prefix="db")
    assert {"nodes", "send", "completion", "logout"} <= set(
        complete(app, monkeypatch, capsys, "fleetrun ")
    )
    assert complete(app, monkeypatch, capsys, "fleetrun no") == ["nodes"]
    assert "--output" in complete(app, monkeypatch, capsys, "fleetrun nodes list --o")
    assert complete(app, monkeypatch, capsys, "fleetrun nodes show we") == ["web01", "web02"]
    assert complete(app, monkeypatch, capsys, "fleetrun send --node d") == ["db03"]
    by_id = complete(app, monkeypatch, capsys, f"fleetrun nodes show {nodes[0].node_id[:12]}")
    assert nodes[0].node_id in by_id
    assert complete(app, monkeypatch, capsys, "fleetrun --output ") == [
        "json",
        "yaml",
        "table",
        "text",
    ]
    docs = complete(app, monkeypatch, capsys, "fleetrun documents show Run")
    assert {"RunShellScript", "RunPythonScript"} <= set(docs)
    assert "RunShellScript" in complete(app, monkeypatch, capsys, "fleetrun send --document RunS")


def test_completion_offers_the_login_files_profiles(app, monkeypatch, capsys, config):
    login = ("login", "--server", app.url, "--token", app.token)
    ok(cli(app, config, *login, token=False))
    ok(cli(app, config, *login, "--profile", "staging", token=False))
    offered = complete(app, monkeypatch, capsys, "fleetrun nodes list --profile ", config=config)
    assert offered == ["default", "staging"]
    assert complete(app, monkeypatch, capsys, "fleetrun --profile st", config=config) == ["staging"]


def test_completion_is_silent_when_the_server_does_not_answer(app, monkeypatch, capsys):
    assert (
        complete(app, monkeypatch, capsys, "fleetrun nodes show ", server="http://127.0.0.1:9")
        == []
    )
