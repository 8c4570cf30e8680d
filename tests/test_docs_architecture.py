"""docs/architecture.md shows the code as it is: every gateway module in the module map, and
the splice's diagram drawn from its transition table."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from gateway.feed.splice import TRANSITIONS, Event, State

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"

_MODULE_MAP = re.compile(r"^```\ngateway/\n(.*?)^```", re.MULTILINE | re.DOTALL)
_STATE_DIAGRAM = re.compile(r"^```mermaid\nstateDiagram-v2\n(.*?)^```", re.MULTILINE | re.DOTALL)
_EDGE = re.compile(r"\s*(\w+) --> (\w+): (.+)")


def mapped_modules(page: str) -> set[str]:
    """The gateway/ paths of the `.py` files the module map names."""
    match = _MODULE_MAP.search(page)
    assert match is not None, "docs/architecture.md has no module map (a ```-block of gateway/)"
    modules, folder = set(), ""
    for line in match.group(1).splitlines():
        indent = len(line) - len(line.lstrip())
        name = line.split()[0] if line.strip() else ""
        if indent == 2:
            folder = ""
        if name.endswith("/"):
            folder = name
        elif name.endswith(".py") and indent <= 4:
            modules.add(f"gateway/{folder}{name}")
    return modules


def tracked_modules() -> set[str]:
    out = subprocess.run(
        ["git", "ls-files", "gateway/*.py", "gateway/**/*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {path for path in out.split() if not path.endswith("__init__.py")}


def drawn_transitions(page: str) -> set[tuple[State, Event, State]]:
    """The splice diagram's edges as (state, event, next state); `[*]` edges are left out."""
    match = _STATE_DIAGRAM.search(page)
    assert match is not None, "docs/architecture.md has no stateDiagram-v2 of the splice"
    events = {event.value: event for event in Event}
    edges = set()
    for line in match.group(1).splitlines():
        edge = _EDGE.fullmatch(line)
        if edge is None:
            continue
        source, target, labels = edge.groups()
        for label in labels.split(","):
            event = events[label.strip().removesuffix("(reason)")]
            edges.add((State[source], event, State[target]))
    return edges


def test_module_map_names_every_gateway_module() -> None:
    mapped = mapped_modules(PAGE.read_text(encoding="utf-8"))
    missing = sorted(tracked_modules() - mapped)
    assert not missing, f"add to the module map in docs/architecture.md: {missing}"
    gone = sorted(path for path in mapped if not (ROOT / path).is_file())
    assert not gone, f"the module map in docs/architecture.md names modules that are gone: {gone}"


def test_splice_diagram_is_the_transition_table() -> None:
    drawn = drawn_transitions(PAGE.read_text(encoding="utf-8"))
    table = {(state, event, after) for (state, event), after in TRANSITIONS.items()}
    assert drawn == table, (
        "docs/architecture.md's splice diagram differs from gateway/feed/splice.py: "
        f"not drawn {sorted(map(str, table - drawn))}, not in the table "
        f"{sorted(map(str, drawn - table))}"
    )
