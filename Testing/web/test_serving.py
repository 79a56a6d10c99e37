"""Serving checks of the web front-end (no browser, no server): bind address, token, origin."""

from __future__ import annotations

import pytest

from kidneytumorseg_web.serving import (
    ServingError,
    check_bind,
    check_token,
    is_loopback,
    new_token,
    origin_allowed,
    token_matches,
    trame_argv,
)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]", "LOCALHOST"])
def test_loopback_binds_need_no_flag(host):
    assert is_loopback(host)
    assert check_bind(host, allow_remote=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", "10.0.0.1"])
def test_a_non_loopback_bind_is_refused_without_the_flag(host):
    assert not is_loopback(host)
    with pytest.raises(ServingError, match="--allow-remote"):
        check_bind(host, allow_remote=False)


def test_a_non_loopback_bind_with_the_flag_gives_a_warning():
    warning = check_bind("0.0.0.0", allow_remote=True)
    assert warning and "other machines" in warning and "--token" in warning
    assert "has the token" in check_bind("0.0.0.0", allow_remote=True, token="abcdefgh12")


def test_an_empty_host_is_refused():
    with pytest.raises(ServingError):
        check_bind("", allow_remote=True)


@pytest.mark.parametrize("token", ["short", "12345678901", "has space in it", "wslink-secret", "a" * 129, "tok%2Fen12"])
def test_unusable_tokens_are_refused(token):
    with pytest.raises(ServingError, match="--token"):
        check_token(token)


def test_tokens_compare_exactly():
    token = check_token(new_token())
    assert token_matches(token, token)
    assert not token_matches(token + "x", token)
    assert not token_matches(None, token)
    assert not token_matches("wslink-secret", token)
    assert token_matches("anything", None) and token_matches(None, None)


@pytest.mark.parametrize(("origin", "host", "loopback", "allowed"), [
    ("http://127.0.0.1:8080", "127.0.0.1:8080", True, True),
    (None, "127.0.0.1:8080", True, True),                         # a script, not a browser: the token decides
    ("http://evil.example", "127.0.0.1:8080", True, False),       # cross-site websocket hijacking
    ("http://127.0.0.1:9999", "127.0.0.1:8080", True, False),     # another local port
    ("http://evil.example:8080", "evil.example:8080", True, False),  # DNS rebinding onto a loopback server
    ("http://ct.hospital.lan:8080", "ct.hospital.lan:8080", False, True),
    ("null", "127.0.0.1:8080", True, False),
    ("http://127.0.0.1:8080", None, True, False),
])
def test_origin_checks(origin, host, loopback, allowed):
    assert origin_allowed(origin, host, loopback) is allowed


def test_trame_gets_the_bind_and_the_token_explicitly():
    argv = trame_argv("127.0.0.1", 0, "abcdefgh12")
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--authKey") + 1] == "abcdefgh12"
    assert "--server" in argv


def test_trame_ignores_the_command_line_and_trame_args(monkeypatch):
    """Neither sys.argv nor $TRAME_ARGS can change the address or token the checks above approved."""
    pytest.importorskip("trame_server", reason="the web extra is not installed (pip install -e '.[web]')")
    from trame.app import get_server

    from kidneytumorseg_web.serving import pin_trame_args

    server = get_server("kts-pin-test", client_type="vue3")
    monkeypatch.setenv("TRAME_ARGS", "--host 0.0.0.0 --authKey wslink-secret")
    monkeypatch.setattr("sys.argv", ["x", "--host", "0.0.0.0"])
    pin_trame_args(server, trame_argv("127.0.0.1", 0, "abcdefgh12"))
    options = server.cli.parse_known_args()[0]
    assert (options.host, options.port, options.authKey) == ("127.0.0.1", 0, "abcdefgh12")
