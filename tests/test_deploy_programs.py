"""What the pods run: one multi-stage image for every program (its Dockerfile, what the
build copies, its tags), the token key set the gateway mounts, and the Job that
provisions the stream."""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest
import yaml

from publisher.settings import PublisherSettings
from tests.manifests import (
    DEPLOY,
    OVERLAYS,
    ROOT,
    component,
    config_map,
    containers,
    environment,
    gateway_settings,
    load_settings,
    named,
    nats_user_permissions,
)


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_image_is_multi_stage_slim_python_non_root_with_both_entrypoints() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert arg is not None
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", arg[1])
    for stage in stages:
        assert re.fullmatch(r"FROM \$\{PYTHON_IMAGE\}( AS \w+)?", stage[0]), stage[0]
    runtime = stages[-1]
    text = "\n".join(runtime)
    assert not re.search(r"apt-get install|apk add|gcc|build-essential|pip install", text)
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    (user,) = [line.split()[1] for line in runtime if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric, so runAsNonRoot can check it"
    assert int(uid) > 0
    for overlay in OVERLAYS:
        for name in ("gateway", "publisher"):
            for deployment in component(overlay, name):
                pod = deployment["spec"]["template"]["spec"]
                assert pod["securityContext"]["runAsUser"] == int(uid)
    (cmd,) = [line for line in runtime if line.startswith("CMD ")]
    assert cmd == 'CMD ["python", "-m", "gateway"]'
    # The packages the image runs are the project's, all copied into the runtime stage.
    for package in ("contracts", "gateway", "publisher"):
        assert any(re.fullmatch(rf"COPY .*\b{package} \./{package}", line) for line in runtime)
    for module in ("gateway.__main__", "publisher.__main__"):
        assert importlib.util.find_spec(module) is not None, module


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"], "deny by default"
    for needed in ("pyproject.toml", "README.md", "contracts/", "gateway/", "publisher/"):
        assert f"!{needed}" in ignore
    assert not any(entry.startswith("!.venv") or entry == "!tests/" for entry in ignore)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_and_publishers_run_the_one_image(overlay: str) -> None:
    images = {
        container["image"]
        for name in ("gateway", "publisher")
        for deployment in component(overlay, name)
        for container in containers(deployment)
    }
    assert len(images) == 1, images
    (image,) = images
    assert re.fullmatch(r"([\w.-]+/)*price-gateway:[\w.-]+", image), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prod_checks_tokens_from_the_mounted_key_set_and_dev_does_not(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gateway_settings(overlay, monkeypatch)
    if overlay == "dev":
        assert not settings.auth_enabled  # make run's demo and dev: open
        return
    assert settings.auth_enabled
    assert settings.auth_issuer
    assert settings.auth_audience
    (deployment,) = component(overlay, "gateway")
    (container,) = containers(deployment)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["jwks"]["configMap"]["name"] == "gateway-jwks"
    assert mounts["jwks"]["readOnly"] is True
    jwks_file = environment(overlay, container)["GATEWAY_AUTH_JWKS_FILE"]
    assert jwks_file.startswith(mounts["jwks"]["mountPath"] + "/")


def test_the_image_tags_and_the_api_description_carry_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    api = yaml.safe_load((ROOT / "gateway" / "http" / "openapi.yaml").read_text())
    assert api["info"]["version"] == version
    for path in (DEPLOY / "base", DEPLOY / "overlays" / "prod"):
        kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
        tags = {image["name"]: image["newTag"] for image in kustomization.get("images", [])}
        # The project's image; prod also lists NATS's, for the pinning step (pin_images.py).
        assert tags.get("price-gateway") == version, f"{path}: {tags}"
    assert f"price-gateway:{version} ." in (DEPLOY / "README.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_job_provisions_the_stream_and_the_publishers_only_wait_for_it(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishers cannot change the stream (prod: their NATS user may not); the Job does,
    with the stream settings the gateway and the publishers read."""
    job = named(overlay, "Job", "stream-provision")
    (container,) = containers(job)
    assert container["command"] == ["python", "-m", "contracts.provision"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    env = environment(overlay, container)
    assert {k: v for k, v in env.items() if k.startswith("STREAM_")} == {
        k: v for k, v in config_map(overlay, "price-stream").items() if k.startswith("STREAM_")
    }
    for deployment in component(overlay, "publisher"):
        (publisher,) = containers(deployment)
        with monkeypatch.context() as scoped:
            settings = load_settings("publisher", environment(overlay, publisher), scoped)
        assert isinstance(settings, PublisherSettings)
        assert settings.manage_stream is False
    if overlay == "prod":
        assert env["NATS_USER"] == "provisioner"
        entry = nats_user_permissions(config_map("prod", "nats-config")["nats.conf"], "provisioner")
        assert "$JS.API.STREAM.CREATE.PRICES" in entry
        assert re.search(rf'subscribe:\s*\{{\s*allow:\s*\["{env["NATS_INBOX_PREFIX"]}\.>"\]', entry)
