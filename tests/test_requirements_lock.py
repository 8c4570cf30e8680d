"""requirements.lock: every runtime dependency pinned, each pin admitted by pyproject's
range, the set closed under the pins' own requirements, equal to what the tests run
against, and what the image and `make install` install."""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.requirements_lock import LOCK, ROOT, closure, declared, parse, render

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def pins() -> dict[str, str]:
    return parse(LOCK.read_text())


def test_every_declared_range_admits_its_locked_version() -> None:
    locked = pins()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not locked"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"pyproject says {requirement}, the lock {name}=={locked[name]}"
        )


def test_the_lock_is_closed_under_its_own_requirements() -> None:
    """Each locked package's requirements (as this Python's markers select them) are locked,
    at versions they admit: `pip install --no-deps -r` leaves nothing out."""
    locked = pins()
    for name, version in locked.items():
        for text in metadata.distribution(name).requires or []:
            dependency = Requirement(text)
            if dependency.marker is not None and not dependency.marker.evaluate({"extra": ""}):
                continue  # an extra's requirement: checked from whoever asks for the extra
            wanted = canonicalize_name(dependency.name)
            assert wanted in locked, f"{name}=={version} needs {dependency}, not locked"
            assert dependency.specifier.contains(locked[wanted], prereleases=True), (
                f"{name} needs {dependency}, the lock has {locked[wanted]}"
            )


def test_the_lock_is_what_the_tests_run_against() -> None:
    """The venv's versions of the runtime closure, rendered, are the file: regenerate it
    (python -m tests.requirements_lock) after an upgrade or a pyproject change."""
    assert LOCK.read_text() == render(closure(declared()))


def test_the_image_and_make_install_install_from_the_lock() -> None:
    build = DOCKERFILE.replace("\\\n", " ")
    assert re.search(r"^COPY .*\brequirements\.lock\b", build, re.M)
    install = re.search(r"^RUN (.*)$", build[build.index("requirements.lock") :], re.M)
    assert install is not None
    steps = [step.strip() for step in install[1].split("&&")]
    assert steps[0] == "pip install --no-deps -r requirements.lock"
    assert steps[1] == "pip install --no-deps ."
    assert "pip check" in steps
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().split()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install -c requirements\.lock -e '\.\[dev\]'", makefile)
    assert re.search(r"^\$\(INSTALLED\): pyproject\.toml requirements\.lock$", makefile, re.M)
