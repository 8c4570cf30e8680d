"""`python -m tests.requirements_lock`: write requirements.lock, the exact versions of the
runtime dependencies (pyproject's `dependencies` and everything they need, on Linux with
this Python), as installed in this venv, the one the tests ran against. The image
installs exactly these (Dockerfile); `make install` constrains the venv to them.
tests/test_requirements_lock.py checks the file against pyproject and the venv."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
HEADER = """\
# The runtime dependencies' exact versions (CPython 3.11, Linux), the ones the tests ran
# against. Generated: python -m tests.requirements_lock (after changing pyproject.toml's
# dependencies or upgrading the venv); the Dockerfile installs exactly these, and
# `make install` constrains the venv to them. No hashes: wheels differ per platform.
"""


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in extras | {""})


def closure(roots: list[Requirement]) -> dict[str, str]:
    """canonical name -> installed version, for `roots` and all they require (with their
    extras), as this interpreter's markers select them."""
    found: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    pending = list(roots)
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in found and extras <= extras_seen[name]:
            continue
        dist = metadata.distribution(name)
        found[name] = dist.version
        extras_seen[name] = extras_seen.get(name, set()) | extras
        for text in dist.requires or []:
            dependency = Requirement(text)
            if _applies(dependency, extras_seen[name]):
                pending.append(dependency)
    return found


def render(versions: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={versions[name]}\n" for name in sorted(versions))


def parse(text: str) -> dict[str, str]:
    """The lock's pins: canonical name -> version."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def main() -> None:
    LOCK.write_text(render(closure(declared())))
    sys.stdout.write(f"wrote {LOCK.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
