"""docs/configuration.md is what `--help` says: every flag, its variable, default and help."""

from __future__ import annotations

from tests.configuration_docs import PAGE, generate, parse_help

SAMPLE_HELP = """\
usage: python -m demo [-h] [--nats-url STR] [--stream-max-consumers INT]

options:
  -h, --help            show this help message and exit
  --nats-url STR        NATS server URL(s) [$NATS_URL] (default: nats://127.0.0.1:4222)
  --nats-password STR   NATS password [$NATS_PASSWORD]
  --stream-max-consumers INT
                        consumers the stream admits [$STREAM_MAX_CONSUMERS] (default: 100000)
"""


def test_configuration_page_matches_help() -> None:
    assert PAGE.read_text(encoding="utf-8") == generate(), (
        "docs/configuration.md differs from the commands' --help: run make docs"
    )


def test_help_parser_reads_flag_variable_default_and_help() -> None:
    options = parse_help(SAMPLE_HELP)
    assert [(o.flag, o.kind, o.variable, o.default, o.help) for o in options] == [
        ("--nats-url", "STR", "NATS_URL", "nats://127.0.0.1:4222", "NATS server URL(s)"),
        ("--nats-password", "STR", "NATS_PASSWORD", None, "NATS password"),
        (
            "--stream-max-consumers",
            "INT",
            "STREAM_MAX_CONSUMERS",
            "100000",
            "consumers the stream admits",
        ),
    ]
