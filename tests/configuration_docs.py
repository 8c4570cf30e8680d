"""docs/configuration.md, written from the `--help` of both commands (gateway, publisher).

`make docs` runs it after a setting changes; tests/test_docs_configuration.py fails while
the page differs from what it would write. The commands run with an empty environment, so
that variables set in the shell of whoever runs it do not show up as defaults.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
COMMANDS = ("gateway", "publisher")
HELP_TIMEOUT = 60.0

# argparse wraps at $COLUMNS: wide enough, each option's help is one line, either after
# the flag or, when the flag is long, on the next line.
_OPTION = re.compile(r"  (--[a-z0-9-]+) ([A-Z]+)(?: {2,}(\S.*))?")
_CONTINUATION = re.compile(r" {3,}(\S.*)")
_HELP = re.compile(r"(?P<help>.*) \[\$(?P<variable>[A-Z0-9_]+)\](?: \(default: (?P<default>.*)\))?")

INTRO = """\
# Configuration

Every setting is a flag and an environment variable; `python -m gateway --help` and
`python -m publisher --help` list them all. Flag beats variable beats default. Settings
the two commands share have no prefix (`NATS_URL`, `STREAM_*`, `LOG_LEVEL`); the others
are `GATEWAY_*` or `PUBLISHER_*`. Booleans take `true`/`false` (also `1`/`0`, `yes`/`no`,
`on`/`off`). A bad value, or a file that cannot be read, exits with status 2 and one line
on stderr. Secrets have no default shown and are never printed.

Which NATS credentials to give each command in prod, and why:
[nats-permissions.md](nats-permissions.md). `make asyncapi` regenerates
`publisher/asyncapi.yaml` from the publisher's settings and code; a test fails when it
is stale.

This page is generated from `--help` by `make docs` (`tests/configuration_docs.py`);
`tests/test_docs_configuration.py` fails when it differs. Edit the settings' help
(`contracts/settings.py`, `gateway/settings.py`, `publisher/settings.py`), not this page.
"""


@dataclass(frozen=True, slots=True)
class Option:
    """One flag as `--help` shows it."""

    flag: str
    kind: str
    variable: str
    default: str | None  # None: a secret, whose value is never shown
    help: str


def help_text(command: str) -> str:
    """What `python -m <command> --help` prints, with no setting from the environment."""
    env = {"PATH": os.environ.get("PATH", ""), "COLUMNS": "10000", "PYTHONUTF8": "1"}
    result = subprocess.run(
        [sys.executable, "-m", command, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HELP_TIMEOUT,
        check=True,
    )
    return result.stdout


def parse_help(text: str) -> list[Option]:
    """The options of an argparse `--help` (except `--help` itself), in order."""
    options: list[Option] = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = _OPTION.fullmatch(line)
        if match is None:
            continue
        flag, kind, help_ = match.groups()
        if help_ is None:
            following = _CONTINUATION.fullmatch(lines[number + 1])
            if following is None:
                raise ValueError(f"no help for {flag} in --help: {lines[number + 1]!r}")
            help_ = following.group(1)
        parts = _HELP.fullmatch(help_)
        if parts is None:
            raise ValueError(f"{flag}: its help does not end in [$VARIABLE]: {help_!r}")
        options.append(
            Option(flag, kind, parts["variable"], parts["default"], parts["help"].strip())
        )
    if not options:
        raise ValueError(f"no options found in --help:\n{text}")
    return options


def _cell(text: str) -> str:
    # Markdown would read `<SYMBOL>` as an HTML tag, and a `|` as the end of the cell.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _default(option: Option) -> str:
    if option.default is None:
        return "(secret, not shown)"
    if option.default == "":
        return "(empty)"
    return "`{}`".format(option.default.replace("|", "\\|"))  # a code span shows & and < as is


def table(options: list[Option]) -> str:
    rows = [
        "| flag | variable | type | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows.extend(
        f"| `{o.flag}` | `{o.variable}` | {o.kind.lower()} | {_default(o)} | {_cell(o.help)} |"
        for o in options
    )
    return "\n".join(rows) + "\n"


def render(helps: dict[str, str]) -> str:
    """The page, from each command's `--help` text."""
    parsed = {command: parse_help(text) for command, text in helps.items()}
    gateway, publisher = parsed["gateway"], parsed["publisher"]
    shared_flags = {o.flag for o in gateway} & {o.flag for o in publisher}
    shared = [o for o in gateway if o.flag in shared_flags]
    if shared != [o for o in publisher if o.flag in shared_flags]:
        raise ValueError("a shared setting reads differently in the two commands' --help")
    sections = [
        INTRO,
        "## Both commands\n\nNATS, its credentials, the stream's configuration and logging.\n",
        table(shared),
        "## Gateway: `python -m gateway`\n",
        table([o for o in gateway if o.flag not in shared_flags]),
        "## Publisher: `python -m publisher`\n",
        table([o for o in publisher if o.flag not in shared_flags]),
    ]
    return "\n".join(sections)


def generate() -> str:
    """The page as the commands' `--help` has it now."""
    return render({command: help_text(command) for command in COMMANDS})


def main() -> int:
    PAGE.write_text(generate(), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
