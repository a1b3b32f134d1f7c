"""The web console in process: sign-in and its cookie, CSRF, the security headers, and
every page decided by the API's own policies as the signed-in principal."""

from __future__ import annotations

import re

import pytest

from fleetrun.server.web import session as console_session
from tests.harness import wait_for

ORIGIN = "http://127.0.0.1"


def http(app):
    """A cookie-keeping HTTP client on the app (the TestClient's own jar)."""
    return app.http


def sign_in(app, token):
    client = http(app)
    client.cookies.clear()
    answer = client.post(
        "/ui/sign-in",
        data={"token": token, "next": "/ui/nodes"},
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return answer


def csrf_of(page_html):
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page_html)
    assert found, "the page carries the session's CSRF token"
    return found.group(1)


def test_root_redirects_to_the_console_and_pages_need_a_session(app):
    client = http(app)
    client.cookies.clear()
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    fleet = client.get("/ui/nodes", follow_redirects=False)
    assert fleet.status_code == 303
    assert fleet.headers["location"] == "/ui/sign-in?next=/ui/nodes"
    form = client.get("/ui/sign-in")
    assert form.status_code == 200 and 'name="token"' in form.text


def test_sign_in_sets_a_sealed_httponly_strict_cookie_and_a_wrong_token_is_refused(app):
    answer = sign_in(app, app.token)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{console_session.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http on loopback; under TLS it is set
    assert app.token not in cookie  # the token is sealed, never in clear
    assert re.search(r"Max-Age=\d+", cookie)
    page = http(app).get("/ui/nodes")
    assert page.status_code == 200 and "admin" in page.text

    http(app).cookies.clear()
    wrong = http(app).post("/ui/sign-in", data={"token": "fr_wrong"}, headers={"origin": ORIGIN})
    assert wrong.status_code == 401
    assert "The API token is not valid" in wrong.text
    assert "set-cookie" not in wrong.headers


def test_console_answers_carry_a_csp_without_inline_script(app):
    sign_in(app, app.token)
    page = http(app).get("/ui/nodes")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text and " on" + "click=" not in page.text
    assert http(app).get("/ui/static/vendor/htmx.min.js").status_code == 200


def test_a_state_change_needs_the_csrf_token_and_the_same_site(app):
    (node,) = app.enrol(1, tags={"env": "test"})
    sign_in(app, app.token)
    client = http(app)
    page = client.get(f"/ui/nodes/{node.node_id}")
    token = csrf_of(page.text)
    url = f"/ui/nodes/{node.node_id}/tags"

    missing = client.post(url, data={"set": "role=web"}, headers={"origin": ORIGIN})
    assert missing.status_code == 403 and "CSRF token does not match" in missing.text
    cross = client.post(
        url,
        data={"set": "role=web", "csrf": token},
        headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
    )
    assert cross.status_code == 403 and "came from another site" in cross.text
    for origin in ("https://evil.example", "null"):  # a browser without Sec-Fetch-Site
        other = client.post(
            url, data={"set": "role=web", "csrf": token}, headers={"origin": origin}
        )
        assert other.status_code == 403 and "came from another site" in other.text, origin
    assert app.client.get_node(node.node_id).tags == {"env": "test"}  # nothing changed

    done = client.post(
        url, data={"set": "role=web", "csrf": token}, headers={"origin": ORIGIN},
        follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303
    assert app.client.get_node(node.node_id).tags == {"env": "test", "role": "web"}


def test_sign_out_ends_the_session(app):
    sign_in(app, app.token)
    client = http(app)
    token = csrf_of(client.get("/ui/nodes").text)
    out = client.post(
        "/ui/sign-out", data={"csrf": token}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert out.status_code == 303
    assert "Max-Age=0" in out.headers["set-cookie"] or "expires=" in out.headers["set-cookie"]
    assert client.get("/ui/nodes", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path", ["/ui/nodes", "/ui/run", "/ui/commands"])
def test_main_pages_render_for_the_administrator(app, path):
    app.enrol(2, tags={"env": "test"})
    sign_in(app, app.token)
    page = http(app).get(path)
    assert page.status_code == 200, page.text


def test_a_console_change_is_in_the_audit_log_as_the_principal_and_action(app):
    (node,) = app.enrol(1)
    sign_in(app, app.token)
    token = csrf_of(http(app).get("/ui/nodes").text)
    http(app).post(
        f"/ui/nodes/{node.node_id}/tags",
        data={"set": "role=web", "csrf": token},
        headers={"origin": ORIGIN},
    )

    def recorded():
        return [
            r
            for r in app.client.list_audit_records(action="fleetrun:TagNode", limit=10)
            if r.path == f"/ui/nodes/{node.node_id}/tags"
        ]

    records = wait_for(recorded, what="the console's change in the audit log")
    assert records[0].principal == "admin" and records[0].decision == "allow"


def test_the_cookie_expires_with_the_token_and_is_secure_under_tls(app):
    app.client.create_principal("brief")
    token = app.client.create_token("brief", expires_in_s=600).token
    client = http(app)
    client.cookies.clear()
    answer = client.post(
        "https://127.0.0.1/ui/sign-in",
        data={"token": token},
        headers={"origin": "https://127.0.0.1"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"]
    assert "Secure" in cookie
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))
    assert 500 < max_age <= 600  # the token's expiry, not the 12 hours a session may last
