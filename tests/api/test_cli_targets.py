"""Naming nodes and scripts as an operator does: `--node web01`, `--node 'web*'`,
`nodes show NAME`, `targets preview`, `--script-file FILE`, `--script -` (stdin).
Through the CLI's real entry point against the real app in process."""

from __future__ import annotations

import json

import pytest

from fleetrun.cli.exits import Exit


@pytest.fixture
def fleet(app):
    """web01, web02 (role=web) and db03 (role=db)."""
    app.enrol(2, tags={"role": "web"}, prefix="web")
    app.enrol(1, tags={"role": "db"}, prefix="db")
    return {n.name: n.id for n in app.client.list_nodes()}


def _sent_to(app, done):
    assert done.exit_code == 0, done
    command = json.loads(done.stdout)
    return sorted(i.node_name for i in app.client.list_invocations(command["id"])), command


def test_nodes_are_named_by_id_name_or_glob(app, fleet):
    names, _ = _sent_to(app, app.cli("send", "--node", "web*", "--script", "true", "--json"))
    assert names == ["web01", "web02"]
    names, _ = _sent_to(
        app,
        app.cli("send", "--node", "db03", "--node", fleet["web01"], "--script", "true", "--json"),
    )
    assert names == ["db03", "web01"]
    shown = app.cli("nodes", "show", "db03", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["id"] == fleet["db03"]


def test_a_name_that_names_no_node_or_several_is_refused(app, fleet):
    missing = app.cli("send", "--node", "web9", "--script", "true")
    assert missing.exit_code == Exit.USAGE
    assert "No node web9 exists: no node id or name matches it" in missing.stderr
    assert app.cli("nodes", "show", "nope").exit_code == Exit.USAGE
    _register_named(app, "web01")  # a node's name is its registrant's choice: not unique
    twins = app.cli("send", "--node", "web01", "--script", "true")
    assert twins.exit_code == Exit.USAGE
    assert "2 nodes are named web01" in twins.stderr and fleet["web01"] in twins.stderr
    assert app.cli("send", "--node", "web0?", "--script", "true").exit_code == 0  # a glob: all
    assert len(app.client.list_commands(limit=10)) == 1


def _register_named(app, name):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from tests.inprocess import _raw_public

    activation = app.client.create_activation()
    app.client.request(
        "POST",
        "/v1/agent/register",
        json={
            "activation_id": activation.id,
            "activation_code": activation.code,
            "public_key": _raw_public(Ed25519PrivateKey.generate()),
            "seal_public_key": _raw_public(X25519PrivateKey.generate()),
            "name": name,
            "tags": {},
            "facts": {"platform": "Linux", "hostname": name},
            "agent_version": "0.0.0-test",
        },
    )


def test_targets_preview_lists_what_a_send_would_select_and_sends_nothing(app, fleet):
    done = app.cli("targets", "preview", "--tag", "role=web", "--json")
    assert done.exit_code == 0, done
    assert sorted(n["name"] for n in json.loads(done.stdout)) == ["web01", "web02"]
    table = app.cli("targets", "preview", "--node", "db*")
    assert "db03" in table.stdout and fleet["db03"] in table.stdout
    assert "1 node(s) selected." in table.stderr
    none = app.cli("targets", "preview", "--tag", "role=cache")
    assert none.exit_code == Exit.USAGE
    assert "the values of role are: db, web" in none.stderr
    assert app.client.list_commands(limit=10) == []


def test_the_script_comes_from_a_file_or_stdin(app, fleet, tmp_path):
    script = "echo from a file\nuptime\n"
    path = tmp_path / "deploy.sh"
    path.write_text(script)
    _, command = _sent_to(app, app.cli("send", "--all", "--script-file", str(path), "--json"))
    assert command["parameters"]["commands"] == [script]
    piped = app.cli("send", "--all", "--script", "-", "--json", input="echo piped\n")
    _, command = _sent_to(app, piped)
    assert command["parameters"]["commands"] == ["echo piped\n"]
    both = app.cli("send", "--all", "--script", "x", "--script-file", str(path))
    assert both.exit_code == Exit.USAGE and "one of --script, --script-file" in both.stderr
    empty = app.cli("send", "--all", "--script", "-", input="  \n")
    assert empty.exit_code == Exit.USAGE and "The script is empty" in empty.stderr
    gone = app.cli("send", "--all", "--script-file", str(tmp_path / "nope.sh"))
    assert gone.exit_code == Exit.USAGE and "Cannot use the script file" in gone.stderr


def test_tags_are_set_and_removed_after_enrolment_and_targets_see_them(app, fleet):
    done = app.cli("nodes", "tag", "db03", "role=web", "tier=2", "--json")
    assert done.exit_code == 0, done
    assert json.loads(done.stdout)["tags"] == {"role": "web", "tier": "2"}
    preview = app.cli("targets", "preview", "--tag", "role=web", "--json")
    assert sorted(n["name"] for n in json.loads(preview.stdout)) == ["db03", "web01", "web02"]
    done = app.cli("nodes", "untag", fleet["db03"], "tier")
    assert done.exit_code == 0 and "now has the tags: role=web" in done.stdout
    missing = app.cli("nodes", "untag", "db03", "tier")
    assert missing.exit_code == Exit.USAGE and "The node has no tag tier" in missing.stderr
    bad = app.cli("nodes", "tag", "db03", "role")
    assert bad.exit_code == Exit.USAGE and "malformed" in bad.stderr


def test_no_one_can_tag_a_node_into_or_out_of_what_their_policy_allows(app, fleet):
    """A principal who may tag only role=web nodes cannot take a db node into role=web
    (decided on the tags before) nor a web node out of it (decided on the tags after)."""
    from tests.api.test_access import doc, principal

    principal(
        app,
        "web-tagger",
        doc(
            {
                "Effect": "Allow",
                "Action": ["fleetrun:TagNode", "fleetrun:ListNodes"],
                "Resource": "frn:fleetrun:node/*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
            }
        ),
    )
    token = app.client.create_token("web-tagger").token
    ok = app.cli("nodes", "tag", fleet["web01"], "tier=1", token=token)
    assert ok.exit_code == 0, ok
    into = app.cli("nodes", "tag", fleet["db03"], "role=web", token=token)
    assert into.exit_code == Exit.ACCESS and "may not perform fleetrun:TagNode" in into.stderr
    out = app.cli("nodes", "tag", fleet["web02"], "role=db", token=token)
    assert out.exit_code == Exit.ACCESS
    tags = {n.name: n.tags for n in app.client.list_nodes()}
    assert tags["db03"] == {"role": "db"} and tags["web02"] == {"role": "web"}
