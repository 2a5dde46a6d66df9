"""Deployment files stay true to the code: compose, the proxy, the env example and the Kubernetes manifests."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from starlette.routing import Match

from shared.app import PREFIXES
from shared.config import SERVICES, Settings
from shared.gateway import Gateway

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
INFRASTRUCTURE = {"postgres", "redis", "minio"}
SECRET_SETTINGS = {"database_url", "redis_url", "s3_secret_key", "keyring"}
# Paths that tell the routing rules apart, including near-misses of each prefix.
SAMPLE_PATHS = ["/", "/healthz", "/api/v1", "/api/v1/healthz", "/api/v1/tasks/1", "/api/v1/distribution",
                "/api/v1/distribution/", "/api/v1/distribution/leases/next", "/api/v1/distributionx",
                "/api/v1/consensus", "/api/v1/consensus/results/1", "/api/v1/consensusx/a", "/metrics"]


def gateway_route(path: str) -> str:
    return Gateway({name: name for name in SERVICES}).route(path)  # type: ignore[arg-type]


def setting_fields() -> set[str]:
    return {name for name, field in Settings.model_fields.items() if not field.exclude}


def env_var(name: str) -> str:
    return f"QUORUM_{name.upper()}"


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


# --- docker-compose.yml ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_infrastructure_services_migrate_job_and_proxy(compose: dict) -> None:
    services = compose["services"]
    assert {*INFRASTRUCTURE, *SERVICES, "migrate", "proxy"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        if "build" in service:
            build = service["build"] if isinstance(service["build"], dict) else {"context": service["build"]}
            context = ROOT / build.get("context", ".")
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), f"{name}: Dockerfile missing"
        for env_file in ([service["env_file"]] if isinstance(service.get("env_file"), str)
                         else service.get("env_file", [])):
            assert (ROOT / env_file).is_file(), f"{name}: env_file {env_file} missing"


def test_compose_serves_each_real_service_once_and_migrates_first(compose: dict) -> None:
    services = compose["services"]
    served: dict[str, str] = {}
    for name, service in services.items():
        command = command_of(service)
        if command[:2] == ["quorum", "serve"]:
            assert command[2] in SERVICES, f"{name} runs `quorum serve {command[2]}`: no such service"
            assert command[2] not in served.values(), f"{command[2]} is served twice"
            served[name] = command[2]
    assert sorted(served.values()) == sorted(SERVICES)
    assert command_of(services["migrate"]) == ["quorum", "migrate"]
    assert services["migrate"].get("restart") == "no"
    for name in served:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert INFRASTRUCTURE <= set(depends), f"{name} does not wait for the infrastructure"


def test_compose_healthchecks_dependencies_and_volumes(compose: dict) -> None:
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        if name != "migrate":
            test = service.get("healthcheck", {}).get("test")
            assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
        depends = service.get("depends_on", {})
        for target in (depends if isinstance(depends, list) else depends.keys()):
            assert target in services, f"{name} depends on unknown service {target}"
        for volume in service.get("volumes", []):
            source = (volume if isinstance(volume, str) else volume["source"]).split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
    for stateful in INFRASTRUCTURE:
        assert services[stateful].get("volumes"), f"{stateful} keeps its data in a named volume"
    used = {str(v).split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert declared_volumes <= used, f"declared but unused volumes: {declared_volumes - used}"
    assert any("nginx.conf" in str(v) for v in services["proxy"]["volumes"])
    assert services["proxy"]["ports"], "the proxy publishes the one base URL"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_passes_the_compose_cli_validation() -> None:
    """The compose CLI validates without an engine; where it is not installed the schema essentials still are."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose) <= {"services", "volumes", "networks", "configs", "secrets", "x-quorum-env", "x-common"} | {
        k for k in compose if k.startswith("x-")}, f"unknown top-level keys: {set(compose)}"
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, f"{name} has neither image nor build"
        for dep in service.get("depends_on", {}):
            assert dep in compose["services"], f"{name} depends on unknown service {dep}"
    cli = _compose_cli()
    if cli is None:
        return
    result = subprocess.run([*cli, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], cwd=ROOT,
                            capture_output=True, text=True, env={**os.environ, "COMPOSE_PROJECT_NAME": "quorum"})
    assert result.returncode == 0, result.stderr


# --- proxy ---------------------------------------------------------------------------------------------

def nginx_locations() -> list[tuple[str, str, str]]:
    """(modifier, path, upstream) for each `location [=] path { proxy_pass http://upstream; }`."""
    text = (DEPLOY / "proxy" / "nginx.conf").read_text()
    found = re.findall(r"location\s+(=\s+)?(\S+)\s*\{\s*proxy_pass\s+http://([\w-]+)\s*;\s*\}", text)
    return [(modifier.strip(), path, upstream) for modifier, path, upstream in found]


def nginx_route(path: str) -> str | None:
    locations = nginx_locations()
    for modifier, prefix, upstream in locations:
        if modifier == "=" and path == prefix:
            return upstream
    matches = [(len(prefix), upstream) for modifier, prefix, upstream in locations
               if not modifier and path.startswith(prefix)]
    return max(matches)[1] if matches else None


@pytest.mark.parametrize("path", SAMPLE_PATHS)
def test_proxy_routes_exactly_like_the_gateway(path: str) -> None:
    assert nginx_route(path) == gateway_route(path)


def test_proxy_upstreams_are_the_compose_services(compose: dict) -> None:
    text = (DEPLOY / "proxy" / "nginx.conf").read_text()
    upstreams = dict(re.findall(r"upstream\s+([\w-]+)\s*\{\s*server\s+([\w-]+):\d+", text))
    assert set(upstreams) == set(SERVICES)
    for name, host in upstreams.items():
        assert host in compose["services"] and host == name
    assert {u for _, _, u in nginx_locations()} == set(SERVICES)


# --- deploy/.env.example -------------------------------------------------------------------------------

def env_example_names() -> set[str]:
    text = (DEPLOY / ".env.example").read_text()
    return set(re.findall(r"^#?\s*(QUORUM_[A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    documented = env_example_names()
    missing = sorted(env_var(f) for f in setting_fields() if env_var(f) not in documented)
    assert not missing, f"deploy/.env.example lacks: {missing}"
    unknown = sorted(documented - {env_var(f) for f in setting_fields()})
    assert not unknown, f"deploy/.env.example names settings that do not exist: {unknown}"


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("QUORUM_"):
            monkeypatch.delenv(name)
    settings = Settings(_env_file=DEPLOY / ".env.example")
    assert settings.environment == "production" and not settings.should_migrate_on_start
    assert settings.database_url and settings.redis_url and settings.s3_endpoint


# --- Kubernetes ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                assert {"apiVersion", "kind"} <= set(document), f"{path.name}: not a Kubernetes object"
                documents.append(document)
    return documents


def of_kind(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def app_serves(service: str, path: str) -> bool:
    """Whether the service's app has a GET route for `path` (asked of the router, as a request would be)."""
    settings = Settings(database_url="postgresql://x@127.0.0.1/x", redis_url="redis://127.0.0.1:1/0")
    app = importlib.import_module(f"services.{service}.app").create_app(settings)
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


def test_deployments_for_the_three_services_scale_out_with_probes_and_resources(manifests: list[dict]) -> None:
    deployments = of_kind(manifests, "Deployment")
    assert set(deployments) == set(SERVICES), "one Deployment per service; infrastructure is external"
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["replicas"] >= 2, f"{name} must run at least two replicas"
        template = spec["template"]
        assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        (container,) = template["spec"]["containers"]
        command = [*container.get("command", []), *container.get("args", [])]
        assert command[-3:] == ["quorum", "serve", name], f"{name} runs {command}"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, expected in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == expected, f"{name} {probe} must use {expected}"
            assert app_serves(name, get["path"]), f"{name} has no route {get['path']}"
            assert get["port"] in ports or get["port"] in ports.values()
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


def test_configuration_comes_from_configmap_and_secret(manifests: list[dict]) -> None:
    configmaps, secrets = of_kind(manifests, "ConfigMap"), of_kind(manifests, "Secret")
    valid = {env_var(f) for f in setting_fields()}
    secret_vars = {env_var(f) for f in SECRET_SETTINGS}
    for name, configmap in configmaps.items():
        assert set(configmap["data"]) <= valid, f"{name} sets unknown settings"
        assert not set(configmap["data"]) & secret_vars, f"{name} holds secrets; they belong in a Secret"
    for name, secret in secrets.items():
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        assert keys <= valid and {env_var("database_url"), env_var("redis_url")} <= keys
    workloads = [*of_kind(manifests, "Deployment").values(), *of_kind(manifests, "Job").values()]
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            sources = container["envFrom"]
            assert {s["configMapRef"]["name"] for s in sources if "configMapRef" in s} <= set(configmaps)
            assert {s["secretRef"]["name"] for s in sources if "secretRef" in s} <= set(secrets)
            assert any("configMapRef" in s for s in sources) and any("secretRef" in s for s in sources)
            assert not container.get("env"), "settings come from the ConfigMap/Secret only"


def test_services_ingress_migrate_job_and_external_infrastructure(manifests: list[dict]) -> None:
    services = of_kind(manifests, "Service")
    deployments = of_kind(manifests, "Deployment")
    for name in SERVICES:
        selector = services[name]["spec"]["selector"]
        assert selector.items() <= deployments[name]["spec"]["template"]["metadata"]["labels"].items()
        container_ports = {p["name"] for p in deployments[name]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in services[name]["spec"]["ports"]} <= container_ports
    for name in INFRASTRUCTURE:
        assert services[name]["spec"]["type"] == "ExternalName", f"{name} is an external service"
    assert not of_kind(manifests, "StatefulSet"), "PostgreSQL/Redis/MinIO are not run by these manifests"

    (ingress,) = of_kind(manifests, "Ingress").values()
    rules = [(p["path"], p["pathType"], p["backend"]["service"]["name"])
             for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert {backend for _, _, backend in rules} == set(SERVICES)
    for path in SAMPLE_PATHS:
        assert ingress_route(rules, path) == gateway_route(path), path

    (job,) = of_kind(manifests, "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert [*container.get("command", []), *container.get("args", [])][-2:] == ["quorum", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def ingress_route(rules: list[tuple[str, str, str]], path: str) -> str | None:
    """Kubernetes Prefix matching: whole path elements, longest match wins."""
    def matches(prefix: str, kind: str) -> bool:
        if kind == "Exact":
            return path == prefix
        want = [p for p in prefix.split("/") if p]
        have = [p for p in path.split("/") if p]
        return have[:len(want)] == want
    best = [(len(prefix), backend) for prefix, kind, backend in rules if matches(prefix, kind)]
    return max(best)[1] if best else None


def test_every_manifest_is_in_the_kustomization_and_builds() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # the manifests were parsed and checked above; only the kustomize build needs kubectl
        return
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(built.stdout) if d]
    assert kinds.count("Deployment") == len(SERVICES)
