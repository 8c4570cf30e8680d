"""Settings from flags and variables (pure): flag beats variable beats default."""

from __future__ import annotations

import pytest

from contracts.settings import load_settings, redact_urls
from gateway.settings import Settings


def load(argv: list[str], environ: dict[str, str]) -> Settings:
    return load_settings(Settings, argv, environ, prog="test", env_prefix="GATEWAY_")


def test_flag_beats_variable_beats_default() -> None:
    assert load([], {}).port == 8000
    assert load([], {"GATEWAY_PORT": "9001"}).port == 9001
    assert load(["--port", "9002"], {"GATEWAY_PORT": "9001"}).port == 9002


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
