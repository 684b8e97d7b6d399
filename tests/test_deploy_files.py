"""The origin's deployment files (deploy/) are what they say: the Kubernetes manifests
load as YAML with the kinds expected and a Service that selects the Deployment's
pods, the compose file publishes on loopback only, the Dockerfile runs the origin
as a non-root user with a health check. No cluster and no engine: the image
itself is built and run in tests/docker/test_origin_image.py."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from proxytest.cli import build_parser
from proxytest.origin.cli import TOKEN_ENV, resolve

from .conftest import ROOT

DEPLOY = ROOT / "deploy"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifests() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in _documents(path):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path
            assert doc["kind"] not in found, f"two {doc['kind']} in deploy/kubernetes"
            found[doc["kind"]] = doc
    return found


def test_the_manifests_are_a_deployment_a_service_and_an_ingress() -> None:
    manifests = _manifests()
    assert set(manifests) == {"Deployment", "Service", "Ingress"}
    deployment, service, ingress = (manifests[k] for k in ("Deployment", "Service", "Ingress"))
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    # The Service's port reaches the container's, and the Ingress names the Service.
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in ports
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] == port["name"]
    # The token comes from a Secret, never from the manifest.
    (token,) = [e for e in container["env"] if e["name"] == TOKEN_ENV]
    assert set(token) == {"name", "valueFrom"} and "secretKeyRef" in token["valueFrom"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_deployment_args_are_valid_origin_options_and_match_the_ingress() -> None:
    manifests = _manifests()
    (container,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    argv = [arg.replace("$(POD_NAME)", "proxytest-origin-7d9f-x2") for arg in container["args"]]
    config = resolve(build_parser().parse_args(["origin", *argv]))
    assert [(listen.host, listen.port) for listen in config.listens] == [("0.0.0.0", 8080)]
    path = manifests["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["path"]
    assert config.prefix == path  # routed without rewriting: the origin serves the prefix
    ready = container["readinessProbe"]["exec"]["command"]
    assert ready[-1] == f"http://127.0.0.1:8080{path}/__proxytest/ready"
    annotations = manifests["Ingress"]["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" in annotations


def test_the_compose_file_publishes_on_loopback_only() -> None:
    (compose,) = _documents(DEPLOY / "compose" / "docker-compose.origin.yml")
    published = [p for service in compose["services"].values() for p in service.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for p in published), published
    assert (DEPLOY / "compose" / compose["services"]["origin"]["build"]["context"]).is_dir()
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade", "proxy_buffering off;"):
        assert line in nginx


def test_the_dockerfile_runs_the_origin_unprivileged_with_a_health_check() -> None:
    text = (DEPLOY / "origin" / "Dockerfile").read_text()
    lines = [ln for ln in re.sub(r"\\\n\s*", " ", text).splitlines() if not ln.startswith("#")]
    directives = {ln.split()[0]: ln.split(None, 1)[1] for ln in lines if ln.strip()}
    assert directives["ENTRYPOINT"] == '["proxytest", "origin"]'
    assert directives["CMD"] == '["--listen", "0.0.0.0:8080"]'
    assert directives["USER"].split(":")[0] not in ("0", "root")
    assert "proxytest.origin.health" in directives["HEALTHCHECK"]
    assert "ARG BASE=python:3.11-slim" in text
    assert "[proxies]" not in text  # the origin needs no proxy binaries
    assert shlex.split(directives["RUN"])[:4] == ["python", "-m", "pip", "install"]
