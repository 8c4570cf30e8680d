"""Settings from flags and variables (pure): flag beats variable beats default."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from contracts.nats_options import connect_options
from contracts.settings import CommonSettings, load_settings, redact_urls
from contracts.stream import StreamSettings
from gateway.settings import Settings
from tests.nats_security import tls_config


def load(argv: list[str], environ: dict[str, str]) -> Settings:
    return load_settings(Settings, argv, environ, prog="test", env_prefix="GATEWAY_")


def test_flag_beats_variable_beats_default() -> None:
    assert load([], {}).port == 8000
    assert load([], {"GATEWAY_PORT": "9001"}).port == 9001
    assert load(["--port", "9002"], {"GATEWAY_PORT": "9001"}).port == 9002


def test_the_stream_flags_default_to_the_stream_settings_defaults() -> None:
    # One set of defaults: the publisher and the gateway must create the same stream
    # whether or not an operator passes the flags.
    assert CommonSettings().stream_settings() == StreamSettings()
    assert load([], {}).stream_settings() == StreamSettings()


def test_shared_variables_have_no_process_prefix() -> None:
    settings = load([], {"NATS_URL": "nats://n:1", "STREAM_NAME": "TICKS", "LOG_LEVEL": "debug"})
    assert (settings.nats_url, settings.stream, settings.log_level) == (
        "nats://n:1",
        "TICKS",
        "debug",
    )


def test_bad_values_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        load(["--stream-replicas", "2"], {})
    assert exit_.value.code == 2
    assert "--stream-replicas must be 1, 3 or 5" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("urls", "logged"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://user:secret@nats:4222", "nats://***@nats:4222"),
        ("tls://tok3n@a:4222, nats://b:4222", "tls://***@a:4222,nats://b:4222"),
    ],
)
def test_nats_urls_are_logged_without_credentials(urls: str, logged: str) -> None:
    assert redact_urls(urls) == logged


# --- NATS credentials and TLS ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"NATS_USER": "gw", "NATS_PASSWORD": "pw", "NATS_TOKEN": "t"},
            "not --nats-user/--nats-password and --nats-token",
        ),
        (
            {"NATS_URL": "nats://gw:pw@nats:4222", "NATS_TOKEN": "t"},
            "not credentials in --nats-url and --nats-token",
        ),
        ({"NATS_USER": "gw"}, "--nats-user and --nats-password go together"),
        ({"NATS_PASSWORD": "pw"}, "--nats-user and --nats-password go together"),
        ({"NATS_NKEY_SEED": "/nonexistent.nk"}, "--nats-nkey-seed: /nonexistent.nk is not a"),
        ({"NATS_CREDS": "/"}, "--nats-creds: / is not a readable file"),
        ({"NATS_INBOX_PREFIX": "_INBOX.>"}, "--nats-inbox-prefix must be a subject"),
        ({"NATS_INBOX_PREFIX": "a..b"}, "--nats-inbox-prefix must be a subject"),
    ],
)
def test_nats_credentials_are_checked_at_start(
    environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        load([], environ)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert "pw" not in err.replace("--nats-password", "")


def test_a_tls_key_without_its_certificate_and_a_bad_pem_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    material = tls_config(tmp_path).clients["gateway"]
    with pytest.raises(SystemExit):
        load([], {"NATS_TLS_KEY": material["nats_tls_key"]})
    assert "--nats-tls-cert and --nats-tls-key go together" in capsys.readouterr().err
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(SystemExit):
        load([], {"NATS_TLS_CA": str(tmp_path / "junk.pem")})
    assert "cannot load the TLS files" in capsys.readouterr().err


def test_secrets_are_not_shown_in_help_or_repr(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {
        "NATS_URL": "nats://gw:hunter2@nats:4222",
        "NATS_TOKEN": "t0ken-s3cret",
        "NATS_USER": "",
    }
    with pytest.raises(SystemExit):
        load(["--help"], environ)
    shown = capsys.readouterr().out
    assert "$NATS_PASSWORD" in shown
    assert "$NATS_TOKEN" in shown
    assert "hunter2" not in shown
    assert "t0ken-s3cret" not in shown
    assert "nats://***@nats:4222" in shown
    settings = Settings(nats_user="gw", nats_password="hunter2")
    assert "hunter2" not in repr(settings)
    assert "t0ken-s3cret" not in repr(Settings(nats_token="t0ken-s3cret"))
    assert "hunter2" not in repr(Settings(nats_url="nats://gw:hunter2@nats:4222"))


def test_connect_options_carry_the_one_method_tls_and_the_inbox_prefix(tmp_path: Path) -> None:
    assert connect_options(Settings()) == {"inbox_prefix": "_INBOX"}
    options = connect_options(
        Settings(nats_user="gw", nats_password="pw", nats_inbox_prefix="_INBOX_gateway")
    )
    assert options == {"user": "gw", "password": "pw", "inbox_prefix": "_INBOX_gateway"}
    assert connect_options(Settings(nats_token="t"))["token"] == "t"
    (seed := tmp_path / "user.nk").write_text("SUA...\n")
    assert connect_options(Settings(nats_nkey_seed=str(seed)))["nkeys_seed"] == str(seed)
    assert connect_options(Settings(nats_creds=str(seed)))["user_credentials"] == str(seed)
    tls = connect_options(Settings(**tls_config(tmp_path).clients["gateway"]))["tls"]
    assert isinstance(tls, ssl.SSLContext)
    assert tls.verify_mode == ssl.CERT_REQUIRED
