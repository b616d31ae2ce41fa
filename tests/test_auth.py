"""Who may speak for a device, watch dashboards and command devices; a refusal
says why as data (its kind), which the adapters turn into their answers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hub.auth import Authenticator
from hub.config import AuthSettings, DeviceSettings
from hub.errors import AuthError, AuthFailure

LISTED = (
    DeviceSettings(id="gh-3", token="s3cret", group="greenhouse"),
    DeviceSettings(id="gh-4", token_sha256=hashlib.sha256(b"other").hexdigest()),
)

pytestmark = pytest.mark.unit


def refusal(check: object, *args: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        check(*args)  # type: ignore[operator]
    return caught.value


def test_devices_listed_with_tokens_are_checked() -> None:
    auth = Authenticator(AuthSettings(), LISTED)
    assert auth.enroll == "listed"  # auto: a token is listed
    auth.check_device("gh-3", "s3cret")
    auth.check_device("gh-4", "other")
    assert refusal(auth.check_device, "gh-3", "wrong").kind is AuthFailure.WRONG_TOKEN
    assert refusal(auth.check_device, "gh-3", "").kind is AuthFailure.WRONG_TOKEN
    stranger = refusal(auth.check_device, "stranger", "s3cret")
    assert stranger.kind is AuthFailure.NOT_LISTED
    assert str(stranger) == "device stranger: not listed in [[devices]]"
    assert auth.groups == {"gh-3": "greenhouse"}


def test_open_enrollment_takes_any_device_but_checks_listed_tokens() -> None:
    auth = Authenticator(AuthSettings(enroll="open"), LISTED)
    auth.check_device("anyone", "")
    assert refusal(auth.check_device, "gh-3", "").kind is AuthFailure.WRONG_TOKEN


def test_admin_is_closed_without_a_token_and_checked_with_one() -> None:
    closed = Authenticator(AuthSettings(), ())
    assert refusal(closed.check_admin, "anything").kind is AuthFailure.CLOSED
    auth = Authenticator(AuthSettings(admin_token="root", dashboard_token="look"), ())
    auth.check_admin("root")
    assert refusal(auth.check_admin, "look").kind is AuthFailure.WRONG_TOKEN
    auth.check_dashboard("look")
    assert refusal(auth.check_dashboard, "root").kind is AuthFailure.WRONG_TOKEN


def test_dashboards_need_no_token_when_none_is_set() -> None:
    auth = Authenticator(AuthSettings(), ())
    auth.check_dashboard("")
    assert not auth.dashboard_token_required


def test_a_token_file_is_read_once_and_a_tokenless_entry_takes_any_token(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "gh5.token"
    secret.write_text("from-a-file\n")
    listed = (
        DeviceSettings(id="gh-5", token_file=str(secret)),
        DeviceSettings(id="gh-6"),  # listed, no token: enrollment alone
    )
    auth = Authenticator(AuthSettings(), listed)
    secret.write_text("changed later\n")  # read at startup, as the broker's files are made
    assert auth.enroll == "listed"
    auth.check_device("gh-5", "from-a-file")
    assert refusal(auth.check_device, "gh-5", "changed later").kind is AuthFailure.WRONG_TOKEN
    auth.check_device("gh-6", "")
    auth.check_device("gh-6", "anything")
    assert auth.listed == ("gh-5", "gh-6")
    assert Authenticator(AuthSettings(), (DeviceSettings(id="gh-6"),)).enroll == "open"
