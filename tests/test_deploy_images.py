"""Images in prod are pinned by digest or listed for the pinning step (`make pin-images`,
deploy/pin_images.py), and that step, run on a copy of deploy/ with a stand-in registry,
leaves only digests in the rendered overlay."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.manifests import DEPLOY, ROOT, render, workloads
from tests.servers import BIN

DIGEST = "sha256:" + "ab" * 32


def images(rendered: tuple[dict[str, object], ...] | list[dict[str, object]]) -> set[str]:
    found = set()
    for workload in rendered:
        if workload["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        pod = workload["spec"]["template"]["spec"]  # type: ignore[index]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            found.add(container["image"])
    return found


def entries(overlay: Path) -> list[dict[str, str]]:
    listed: list[dict[str, str]] = yaml.safe_load((overlay / "kustomization.yaml").read_text())[
        "images"
    ]
    return listed


def test_every_prod_image_is_a_digest_or_listed_for_the_pinning_step() -> None:
    listed = {entry.get("newName", entry["name"]) for entry in entries(DEPLOY / "overlays/prod")}
    rendered = images(tuple(workloads("prod")))
    assert rendered
    for image in rendered:
        if "@sha256:" in image:
            continue
        name = image.rsplit(":", 1)[0]
        assert name in listed, f"{image}: neither a digest nor in the prod overlay's images:"
    # The listed tag of an image that base names is base's tag: pinning must not change it.
    for entry in entries(DEPLOY / "overlays/prod"):
        for base in images(tuple(render("dev"))):
            if base.rsplit(":", 1)[0] == entry["name"] and "newName" not in entry:
                assert base == f"{entry['name']}:{entry['newTag']}"


def test_the_pinning_step_leaves_only_digests(tmp_path: Path) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # A stand-in registry: every image resolves to DIGEST.
    resolver = f"{sys.executable} -c 'import sys; print(\"{DIGEST}\")'"
    for _ in range(2):  # idempotent: a second run replaces, never repeats, the digest
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "deploy/pin_images.py"),
                str(copy / "overlays/prod"),
                "--resolver",
                resolver,
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
    text = (copy / "overlays/prod/kustomization.yaml").read_text()
    assert text.count(f"digest: {DIGEST}") == len(entries(copy / "overlays/prod"))
    rendered = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(copy / "overlays/prod")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    pinned = images([doc for doc in yaml.safe_load_all(rendered) if doc])
    assert pinned
    assert all(image.endswith(f"@{DIGEST}") for image in pinned), pinned
