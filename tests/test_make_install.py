"""`make install` on a machine without Chromium (deploy/local/chromium.sh): installs Debian's
package with apt-get when this user may, and otherwise says exactly what to run. The
system commands it calls (id, apt-get, sudo, chromium) are stand-ins on a bare PATH."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "local" / "chromium.sh"
RUN_THIS = "Run: sudo apt-get install -y chromium"


def stand_in(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(0o755)


def install(tmp_path: Path, *, uid: int, commands: dict[str, str]) -> tuple[str, list[str]]:
    """Run the script with only `commands` (and `id` saying `uid`) on PATH; return its
    output and the apt-get calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stand_in(bin_dir, "id", f"echo {uid}")
    stand_in(bin_dir, "env", 'while [[ $1 == *=* ]]; do shift; done; exec "$@"')
    stand_in(bin_dir, "tail", "")
    for name, body in commands.items():
        stand_in(bin_dir, name, body.replace("CALLS", str(calls)))
    result = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        env={"PATH": str(bin_dir), "CHROMIUM_LOG": str(tmp_path / "apt.log")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, "the install goes on without a browser"
    made = calls.read_text().splitlines() if calls.exists() else []
    return result.stdout + result.stderr, made


APT = 'echo "apt-get $*" >> CALLS'


def test_root_installs_debians_chromium_with_apt_get(tmp_path: Path) -> None:
    out, calls = install(tmp_path, uid=0, commands={"apt-get": APT})
    assert calls == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends chromium",
    ]
    assert out.startswith("Installing Debian's chromium")


def test_passwordless_sudo_installs_it_through_sudo(tmp_path: Path) -> None:
    sudo = 'echo "sudo $*" >> CALLS; shift; [[ $1 == true ]] || exec "$@"'
    _, calls = install(tmp_path, uid=1000, commands={"apt-get": APT, "sudo": sudo})
    assert "apt-get install -y -qq --no-install-recommends chromium" in calls
    assert calls[0] == "sudo -n true"


@pytest.mark.parametrize("sudo", [None, "exit 1"], ids=["no sudo", "sudo wants a password"])
def test_a_user_who_may_not_install_is_told_the_exact_command(
    tmp_path: Path, sudo: str | None
) -> None:
    commands = {"apt-get": APT} | ({"sudo": sudo} if sudo else {})
    out, calls = install(tmp_path, uid=1000, commands=commands)
    assert out.strip() == "The browser tests need Chromium. " + RUN_THIS
    assert not [call for call in calls if call.startswith("apt-get")]


def test_a_failed_apt_get_says_what_to_run(tmp_path: Path) -> None:
    out, _ = install(tmp_path, uid=0, commands={"apt-get": "exit 100"})
    assert RUN_THIS in out.splitlines()[-1]


def test_without_apt_get_it_points_at_the_system_package_or_chromium(tmp_path: Path) -> None:
    out, _ = install(tmp_path, uid=0, commands={})
    assert "CHROMIUM=/path/to/chromium" in out


def test_an_installed_chromium_means_nothing_to_do_and_nothing_said(tmp_path: Path) -> None:
    out, calls = install(tmp_path, uid=0, commands={"apt-get": APT, "chromium": ""})
    assert (out, calls) == ("", [])


def test_the_browser_tests_say_the_same_when_chromium_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.browser import chromium_path

    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match="sudo apt-get install -y chromium"):
        chromium_path()
