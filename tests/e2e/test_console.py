"""The web console in a real browser (Debian's Chromium driven by Playwright) against a
real server and real agents: sign-in, a command watched live to the end, a node's
output read while it prints, cancel, a tag-scoped principal's view and refusal, a
cross-site form post, and a screenshot of each main page (under the test's output
directory; FLEETRUN_CONSOLE_SCREENSHOTS names another, such as docs/images)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.harness import Fleet, free_port, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
WEB_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["fleetrun:Get*", "fleetrun:List*", "fleetrun:SendCommand"],
            "Resource": "*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
        },
        {
            "Effect": "Allow",
            "Action": ["fleetrun:ListDocuments", "fleetrun:GetDocument", "fleetrun:ListCommands"],
            "Resource": "*",
        },
    ],
}


def _chromium() -> Path:
    """Debian's Chromium, installed with apt-get when missing and we may (CI runs as
    root); never a browser downloaded by Playwright."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"], check=False, env=env,
            capture_output=True,
        )  # fmt: skip
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed (apt-get install chromium, as root)")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(shared_fleet: Fleet) -> Iterator[object]:
    executable = _chromium()
    with playwright_api.sync_playwright() as play:
        launched = play.chromium.launch(executable_path=str(executable), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("FLEETRUN_CONSOLE_SCREENSHOTS")
    where = Path(chosen) if chosen else tmp_path / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


def signed_in(browser, fleet: Fleet, token: str, *, width: int = 1280, height: int = 800):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{fleet.server.url}/")
    assert page.url.endswith("/ui/sign-in?next=/ui/nodes")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/nodes")
    return context, page


def test_sign_in_run_on_a_tag_and_watch_every_node_succeed_live(shared_fleet, browser, shots):
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    try:
        playwright_api.expect(page.locator("table.grid tbody tr")).to_have_count(3)
        page.keyboard.press("Tab")  # the keyboard reaches the skip link first
        playwright_api.expect(page.locator("a.skip")).to_be_focused()
        page.screenshot(path=str(shots / "console-fleet.png"), full_page=True)
        page.fill("input[name=tag]", "role=web")
        playwright_api.expect(page.locator("table.grid tbody tr")).to_have_count(2)

        web = [a for a in shared_fleet.agents if a.name.startswith("web")]
        page.click(f"a[href='/ui/nodes/{web[0].node_id}']")
        page.wait_for_selector("text=Local configuration")
        page.screenshot(path=str(shots / "console-node.png"), full_page=True)

        page.goto(f"{shared_fleet.server.url}/ui/run")
        page.fill("#target", "role=web")
        page.wait_for_selector("#preview-count:has-text('2')")
        page.fill("#script", "sleep 1\necho hello from $(hostname)")
        page.screenshot(path=str(shots / "console-run.png"), full_page=True)
        page.click("#run-form button[type=submit]")
        page.wait_for_url("**/ui/commands/*")
        url = page.url
        rows = page.locator("#invocations tbody tr")
        assert rows.count() == 2
        # The statuses arrive over server-sent events: no reload of the page.
        page.wait_for_selector("#command-status:has-text('Success')", timeout=60_000)
        assert page.url == url
        # The summary and the table are two events of the stream: the table may follow.
        playwright_api.expect(
            page.locator("#invocations tbody tr[data-status=Success]")
        ).to_have_count(2, timeout=30_000)
        page.click("#invocations tbody tr >> nth=0 >> text=output")
        page.wait_for_selector("#output pre:has-text('hello from')")
        page.screenshot(path=str(shots / "console-command.png"), full_page=True)

        phone = context.new_page()
        phone.set_viewport_size({"width": 390, "height": 844})
        phone.goto(f"{shared_fleet.server.url}/ui/nodes")
        phone.screenshot(path=str(shots / "console-fleet-phone.png"), full_page=True)
    finally:
        context.close()


def test_cancel_a_long_command_from_its_page(shared_fleet, browser):
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    try:
        db = next(a for a in shared_fleet.agents if a.name.startswith("db"))
        page.goto(f"{shared_fleet.server.url}/ui/run?target_kind=nodes&target={db.node_id}")
        page.fill("#script", "sleep 300")
        page.click("#run-form button[type=submit]")
        page.wait_for_url("**/ui/commands/*")
        page.wait_for_selector("#invocations tr[data-status=InProgress]", timeout=30_000)
        page.click("#cancel-all")
        page.wait_for_selector("#command-status:has-text('Cancelled')", timeout=30_000)
        command_id = page.url.rsplit("/", 1)[1]
        assert shared_fleet.client.get_command(command_id).status == "Cancelled"
    finally:
        context.close()


def test_read_a_nodes_output_while_it_prints(shared_fleet, browser, shots, tmp_path):
    """A numbered line every 150 ms until the test releases it: lines appear in the
    page, pushed over server-sent events, while the command is still running."""
    release = tmp_path / "release"
    script = (
        "echo starting >&2; "
        f"i=0; while [ ! -e {release} ] && [ $i -lt 600 ]; do "
        'i=$((i+1)); echo "line $i"; sleep 0.15; done; echo finished'
    )
    db = next(a for a in shared_fleet.agents if a.name.startswith("db"))
    command = shared_fleet.client.send_command(script=script, node_ids=[db.node_id])
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    try:
        page.goto(f"{shared_fleet.server.url}/ui/commands/{command.id}")
        page.wait_for_selector("#invocations tr[data-status=InProgress]", timeout=30_000)
        page.click("#invocations tbody tr >> nth=0 >> text=output")
        live = page.locator("#live-output")
        playwright_api.expect(live).to_contain_text("line 3", timeout=30_000)
        playwright_api.expect(live).to_contain_text("line 25", timeout=30_000)  # it grows
        playwright_api.expect(page.locator("#live-errors")).to_contain_text("starting")
        # The panel keeps its newest line in view.
        page.wait_for_function(
            "() => { const p = document.querySelector('#live-output');"
            " return p.scrollHeight > p.clientHeight"
            " && p.scrollTop + p.clientHeight >= p.scrollHeight - 40; }"
        )
        assert shared_fleet.client.get_command(command.id).status == "InProgress"
        assert "finished" not in live.inner_text()
        page.screenshot(path=str(shots / "console-output-live.png"), full_page=True)
        release.touch()
        page.wait_for_selector("#output pre:has-text('finished')", timeout=30_000)
        playwright_api.expect(page.locator("#live-output")).to_have_count(0)  # stored now
        assert shared_fleet.client.get_command(command.id).status == "Success"
    finally:
        release.touch()
        context.close()


def test_a_tag_scoped_principal_sees_its_nodes_and_is_refused_anothers(shared_fleet, browser):
    admin = shared_fleet.client
    admin.create_principal("console-webops")
    admin.create_policy("console-webops", WEB_ONLY)
    admin.attach("console-webops", policy="console-webops")
    token = admin.create_token("console-webops").token
    context, page = signed_in(browser, shared_fleet, token)
    try:
        names = page.locator("table.grid tbody td a").all_inner_texts()
        assert sorted(names) == ["web01", "web02"]
        db = next(a for a in shared_fleet.agents if a.name.startswith("db"))
        answer = page.goto(f"{shared_fleet.server.url}/ui/nodes/{db.node_id}")
        assert answer is not None and answer.status == 403
        assert "may not perform fleetrun:GetNode" in page.inner_text("main")
    finally:
        context.close()


class _Attacker(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        body = (
            f'<form id="f" method="post" action="{self.target}">'
            '<input name="set" value="owned=yes"><button id="go">go</button></form>'
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_cross_site_form_post_is_refused(shared_fleet, browser):
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    web = next(a for a in shared_fleet.agents if a.name.startswith("web"))
    before = shared_fleet.client.get_node(web.node_id).tags
    _Attacker.target = f"{shared_fleet.server.url}/ui/nodes/{web.node_id}/tags"
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # localhost is another site than 127.0.0.1, where the console is signed in
        page.goto(f"http://localhost:{server.server_address[1]}/")
        with page.expect_navigation():
            page.click("#go")
        assert "came from another site" in page.content()  # 403, before anything is done
        assert shared_fleet.client.get_node(web.node_id).tags == before
    finally:
        server.shutdown()
        server.server_close()
        context.close()


def test_put_a_run_command_on_a_group(shared_fleet, browser, shots):
    shared_fleet.client.create_group("console-webs", tags={"role": ["web"]})
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    try:
        page.goto(f"{shared_fleet.server.url}/ui/groups/console-webs")
        page.click("summary")
        page.fill("#rc-name", "hello")
        page.fill("#rc-script", "echo hello from the group")
        page.click("#rc-put")
        page.wait_for_url("**/ui/groups/console-webs")

        def succeeded() -> bool:
            page.reload()
            return "2 succeeded" in page.inner_text("#summary-hello")

        wait_for(succeeded, timeout_s=60, what="the run command to succeed on both members")
        assert page.locator("section.rc pre:has-text('hello from the group')").count() == 2
        page.screenshot(path=str(shots / "console-group.png"), full_page=True)
    finally:
        context.close()


def test_the_events_page_tails_new_events_live(shared_fleet, browser, shots):
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    try:
        pattern = '{"detail-type": ["Command Status-change Notification"]}'
        page.goto(f"{shared_fleet.server.url}/ui/events?pattern={quote(pattern)}")
        db = next(a for a in shared_fleet.agents if a.name.startswith("db"))
        command = shared_fleet.client.send_command(script="true", node_ids=[db.node_id])
        page.wait_for_selector(f"#events tr:has-text('{command.id}')", timeout=30_000)
        page.screenshot(path=str(shots / "console-events.png"), full_page=True)
    finally:
        context.close()


def test_every_other_main_page_shows_what_the_api_holds(shared_fleet, browser, shots):
    """The commands list, documents, rules, the audit log and access: each answers with
    its page and the records made through the SDK, and is kept as a screenshot."""
    client = shared_fleet.client
    client.create_document("console-tour", "schemaVersion: '2.2'\nmainSteps:\n"
                           "  - action: runShellScript\n    name: hello\n"
                           "    inputs:\n      runCommand: [echo hello]\n")  # fmt: skip
    client.create_rule(
        "console-tour",
        pattern={"source": ["fleetrun"], "detail": {"status": ["Failed"]}},
        targets=[{"target": "webhook:http://127.0.0.1:9/hook", "secret": "a-secret-of-length"}],
    )
    node = shared_fleet.agents[0].node_id
    command = client.send_command(document="console-tour", node_ids=[node])
    client.wait(command.id, timeout_s=60)
    context, page = signed_in(browser, shared_fleet, shared_fleet.server.token)
    base = shared_fleet.server.url
    try:
        for path, heading, shows, shot in [
            ("/ui/commands", "Commands", command.id, "console-commands.png"),
            ("/ui/documents", "Documents", "console-tour", "console-documents.png"),
            ("/ui/documents/console-tour", "console-tour", "echo hello", None),
            ("/ui/rules", "Rules", "console-tour", "console-rules.png"),
            ("/ui/rules/console-tour", "Rule console-tour", "Failed", "console-rule.png"),
            ("/ui/audit", "Audit log", "SendCommand", "console-audit.png"),
            ("/ui/access", "Access", "admin", "console-access.png"),
        ]:
            page.goto(f"{base}{path}")
            playwright_api.expect(page.locator("h1")).to_contain_text(heading)
            playwright_api.expect(page.locator("main")).to_contain_text(shows)
            if shot:
                page.screenshot(path=str(shots / shot), full_page=True)
    finally:
        context.close()
        client.delete_rule("console-tour")
        client.delete_document("console-tour")  # the module's fleet is shared: as it was
