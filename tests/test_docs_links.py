"""The docs hold together: a short README, links that lead somewhere, and no reference to a
file the repository does not hold."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 200
COMMANDS_WITHIN = 40  # lines: the two commands are the first thing a reader sees

# Documents kept outside this repository; built from parts, so this file does not name them.
OUTSIDE = ("DESIGN" + ".md", "SPEC" + ".md", "SPEC" + " §")

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_EXTERNAL = re.compile(r"[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto: ...


@cache
def tracked() -> frozenset[str]:
    """Every path git tracks, and every folder that holds one."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = {path for path in out.split("\0") if path}
    folders = {str(parent) for path in files for parent in Path(path).parents}
    return frozenset(files | folders)


def documents() -> list[Path]:
    return [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """Markdown without its code blocks and code spans, where a link is only an example."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    return _LINK.findall(prose(text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return frozenset(result)


def broken(document: Path, target: str) -> str | None:
    """Why `target`, linked from `document`, leads nowhere; None when it leads somewhere."""
    address, _, fragment = target.partition("#")
    path = (document.parent / address).resolve() if address else document
    try:
        relative = path.relative_to(ROOT).as_posix()
    except ValueError:
        return f"{target} points outside the repository"
    if relative not in tracked():
        return f"{target}: {relative} is not in the repository (git ls-files)"
    if fragment and path.suffix == ".md" and fragment not in anchors(path):
        return f"{target}: {relative} has no heading #{fragment}"
    return None


def test_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < MAX_README_LINES, (
        f"README.md has {len(lines)} lines; keep it under {MAX_README_LINES}, move detail to docs/"
    )
    top = "\n".join(lines[:COMMANDS_WITHIN])
    assert "make run" in top
    assert "make test" in top


@pytest.mark.parametrize("document", documents(), ids=lambda path: path.name)
def test_relative_links_lead_to_files_in_the_repository(document: Path) -> None:
    targets = {t for t in links(document.read_text(encoding="utf-8")) if not _EXTERNAL.match(t)}
    problems = [why for target in sorted(targets) if (why := broken(document, target)) is not None]
    assert not problems, f"{document.relative_to(ROOT)}: " + "; ".join(problems)


def test_no_file_refers_to_documents_outside_the_repository() -> None:
    mentions: list[str] = []
    for relative in sorted(tracked()):
        path = ROOT / relative
        if not path.is_file():
            continue  # a folder, or a file deleted in the working tree
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary (the page's screenshot)
        for number, line in enumerate(text.splitlines(), 1):
            mentions.extend(f"{relative}:{number}" for name in OUTSIDE if name in line)
    assert not mentions, (
        "these name documents the repository does not hold; state the fact, or link the "
        "page of docs/ that does: " + ", ".join(mentions)
    )


def test_link_checker_sees_links_and_headings() -> None:
    text = "[a](docs/api.md#resume) ![b](page.png) `[c](no.md)` [d](https://example.com)"
    assert links(text) == ["docs/api.md#resume", "page.png", "https://example.com"]
    assert slug("How `resume` works: in full") == "how-resume-works-in-full"
    assert slug("One consumer per client, one live feed per process") == (
        "one-consumer-per-client-one-live-feed-per-process"
    )
