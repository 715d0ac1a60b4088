"""The real-Keystone fixture: tokens are issued and validated, and it survives a restart."""

from __future__ import annotations

import pytest

from tests.support.keystone import KeystoneServer

pytestmark = pytest.mark.keystone

VALIDATIONS = "GET /v3/auth/tokens"


def validate(server: KeystoneServer, subject_token: str) -> tuple[int, dict[str, object]]:
    """GET /v3/auth/tokens as the service user, the way authtoken does."""
    service_token, _ = server.issue_token(
        server.service_username, server.service_password, server.service_project_name
    )
    status, _, body = server.request(
        "GET", "/v3/auth/tokens", token=service_token, headers={"X-Subject-Token": subject_token}
    )
    return status, body


def test_member_token_is_issued_validated_and_logged(keystone: KeystoneServer) -> None:
    token, body = keystone.issue_token(
        keystone.member_username, keystone.member_password, keystone.project_name
    )
    assert body["token"]["project"]["id"] == keystone.project_id
    assert {role["name"] for role in body["token"]["roles"]} >= {"member", "reader"}
    assert not body["token"]["is_admin_project"]
    before = keystone.access_log_count(VALIDATIONS)

    status, validated = validate(keystone, token)

    assert status == 200
    assert validated["token"]["user"]["id"] == keystone.member_user_id  # type: ignore[index]
    assert keystone.access_log_count(VALIDATIONS, at_least=before + 1) == before + 1


def test_stop_then_start_keeps_port_and_data(keystone: KeystoneServer) -> None:
    token, _ = keystone.issue_token(keystone.member_username, keystone.member_password)
    url = keystone.url
    try:
        keystone.stop()
        assert keystone.process is None
        with pytest.raises(OSError):
            keystone.request("GET", "/v3")
    finally:
        keystone.start()

    assert keystone.url == url
    assert validate(keystone, token)[0] == 200  # same fernet keys and users after restart
