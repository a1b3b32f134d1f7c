"""Signed documents over the API, in process: a signature that does not verify is not
stored. (Nodes that require signatures need agents: tests/e2e/test_signed.py.)"""

from __future__ import annotations

import pytest

from tests.inprocess import run_cli

DOC = """
description: Say hello
parameters: {who: {type: String, default: world}}
mainSteps:
  - {name: hello, action: runShellScript, inputs: {runCommand: 'echo "hello $who"'}}
"""


def test_a_signature_that_does_not_verify_is_not_stored(app, tmp_path):
    doc = tmp_path / "d.yaml"
    doc.write_text(DOC)
    assert app.cli("documents", "create", "ddd", "--file", str(doc)).returncode == 0
    assert run_cli("keys", "create", "ops", "--dir", str(tmp_path)).returncode == 0
    from fleetrun.cli.keys import load_key
    from fleetrun.core import signing
    from fleetrun.core.errors import ValidationError

    key = load_key(tmp_path / "ops.key")
    with pytest.raises(ValidationError, match="does not verify"):
        app.client.sign_document(
            "ddd",
            "1",
            publisher="ops",
            public_key=signing.public_key_b64(key),
            signature=signing.sign(key, {"other": "content"}),
        )
    assert app.client.get_document("ddd").signatures == []
