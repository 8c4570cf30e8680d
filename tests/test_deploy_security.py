"""The manifests' security: least-privileged NATS users, pods without root or
capabilities, and network policies that allow only the expected paths."""

from __future__ import annotations

import re

import pytest

from publisher.settings import PublisherSettings
from tests.manifests import (
    OVERLAYS,
    Object,
    component,
    config_map,
    containers,
    environment,
    load_settings,
    nats_user_permissions,
    objects,
    workloads,
)


def test_prod_programs_run_as_their_own_least_privileged_nats_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each program's NATS user reads replies only under the inbox prefix the program uses,
    and the gateway, whose user may not manage streams, does not try to."""
    conf = config_map("prod", "nats-config")["nats.conf"]
    for command in ("gateway", "publisher"):
        for deployment in component("prod", command):
            (container,) = containers(deployment)
            with monkeypatch.context() as scoped:
                settings = load_settings(command, environment("prod", container), scoped)
            entry = nats_user_permissions(conf, settings.nats_user)
            assert re.search(r"password:\s*\$\w+", entry), "the password from the Secret"
            subscribe = re.search(r"subscribe:\s*\{\s*allow:\s*\[([^\]]*)\]", entry)
            assert subscribe is not None
            assert subscribe[1].split() == [f'"{settings.nats_inbox_prefix}.>"']
            assert re.search(r"allow_responses:\s*false", entry)
            manages = "$JS.API.STREAM.CREATE." in entry
            if isinstance(settings, PublisherSettings):
                ensures = settings.manage_stream
            else:
                ensures = settings.ensure_stream
            assert manages == ensures, f"{command}: ensure_stream={ensures}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_read_only_without_capabilities(overlay: str) -> None:
    for workload in workloads(overlay):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_only_the_expected_paths(overlay: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in objects(overlay, "NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny

    def peers(rule: Object) -> list[str | None]:
        return [
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            for peer in rule["from" if "from" in rule else "to"]
        ]

    def ports(rule: Object) -> list[int]:
        return [p["port"] for p in rule["ports"]]

    nats_in = {tuple(ports(rule)): peers(rule) for rule in policies["nats"]["ingress"]}
    assert nats_in[(4222,)] == ["gateway", "publisher", "stream-provision"]
    assert nats_in[(6222,)] == ["nats"]
    for name in ("gateway", "publisher", "stream-provision"):
        (egress,) = policies[name]["egress"]
        assert (peers(egress), ports(egress)) == (["nats"], [4222])
    assert "ingress" not in policies["publisher"]
    assert "ingress" not in policies["stream-provision"]
    assert "ingress-nginx" in peers(policies["gateway"]["ingress"][0])
