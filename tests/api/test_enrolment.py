"""Enrolment over the API, in process: activation options are validated. (Registering
through the agent's own command is tests/e2e/test_enrolment.py.)"""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError


def test_activation_options_are_validated(app):
    with pytest.raises(ValidationError, match="expires_in_s"):
        app.client.create_activation(expires_in_s=40 * 86400)
    with pytest.raises(ValidationError, match="Tag key"):
        app.client.create_activation(tags={"bad key!": "x"})
