"""The cluster configuration under infra/: each manifest validates against its tool's schema
(Ray's own launcher schema; KubeRay's RayCluster and the Compose service keys as written in
infra_schemas.py), and the pieces agree with each other (image, Ray version, GPU resources)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import ray
import yaml
from infra_schemas import COMPOSE_SCHEMA, RAYCLUSTER_SCHEMA

INFRA = Path(__file__).resolve().parents[2] / "infra"
IMAGE = "ghcr.io/dlm-crossover/dlm-crossover:latest"


def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_ray_launcher_has_head_and_gpu_workers() -> None:
    cfg = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    for key in (
        "cluster_name",
        "provider",
        "available_node_types",
        "head_node_type",
        "max_workers",
    ):
        assert key in cfg, key
    nodes = cfg["available_node_types"]
    assert cfg["head_node_type"] in nodes
    # The head takes no training tasks; at least one worker type offers GPUs.
    assert nodes[cfg["head_node_type"]]["resources"]["CPU"] == 0
    gpu_types = [n for n in nodes.values() if n.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_types, "no GPU worker node type"
    for node in gpu_types:
        assert node["max_workers"] >= node["min_workers"] >= 0
        assert "InstanceType" in node["node_config"]
    assert sum(n.get("max_workers", 0) for n in nodes.values()) <= cfg["max_workers"] + 2
    assert cfg["docker"]["image"] == IMAGE
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("--address" in c for c in cfg["worker_start_ray_commands"])


def test_kuberay_manifest_is_a_raycluster_with_gpu_groups() -> None:
    docs = _load_all(INFRA / "k8s" / "raycluster.yaml")
    by_kind = {d["kind"]: d for d in docs}
    assert set(by_kind) == {"PersistentVolumeClaim", "RayCluster"}
    cluster = by_kind["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    # The image pins the same Ray as the driver: a version skew breaks the client protocol.
    assert spec["rayVersion"] == ray.__version__
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == IMAGE
    assert {p["containerPort"] for p in head["ports"]} >= {6379, 10001}
    pvc_name = by_kind["PersistentVolumeClaim"]["metadata"]["name"]
    groups = spec["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["minReplicas"] <= group["maxReplicas"]
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == IMAGE
        gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
        assert gpus >= 1
        assert int(group["rayStartParams"]["num-gpus"]) == gpus
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == [pvc_name]


def _stages(dockerfile: str) -> dict[str, str]:
    """Stage name -> its text, split on FROM lines."""
    parts = re.split(r"^FROM\s+", dockerfile, flags=re.MULTILINE)[1:]
    stages = {}
    for part in parts:
        header = part.splitlines()[0]
        match = re.search(r"\bAS\s+(\S+)", header, flags=re.IGNORECASE)
        assert match, f"unnamed stage: {header}"
        stages[match.group(1)] = part
    return stages


def test_dockerfile_builds_flash_attn_and_installs_project() -> None:
    text = (INFRA / "docker" / "Dockerfile").read_text()
    stages = _stages(text)
    assert set(stages) == {"build", "runtime"}
    assert "-devel-" in stages["build"].splitlines()[0], "flash-attn needs nvcc: a devel base"
    assert "-runtime-" in stages["runtime"].splitlines()[0]
    assert re.search(r"torch==\$\{TORCH_VERSION\}", stages["build"])
    assert "flash-attn==" in stages["build"] and "--no-build-isolation" in stages["build"]
    assert "COPY --from=build" in stages["runtime"]
    for package in ("pipeline", "training_core", "analysis", "flows"):
        assert f"COPY {package} " in stages["runtime"], package
    assert "pip install" in stages["runtime"] and "-e ." in stages["runtime"]
    # Same torch as the lock file pins for the CPU build.
    pyproject = (INFRA.parent / "pyproject.toml").read_text()
    pinned = re.search(r'"torch==([\d.]+)"', pyproject).group(1)
    assert f"TORCH_VERSION={pinned}" in text


def test_prefect_compose_uses_postgres() -> None:
    compose = yaml.safe_load((INFRA / "prefect" / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker"} <= set(services)
    server = services["prefect-server"]
    url = server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and "@postgres:5432/" in url
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "prefect server start" in " ".join(server["command"])
    # The server image matches the pinned Prefect so the worker and API speak the same version.
    import prefect

    assert server["image"].split(":")[1].startswith(prefect.__version__)
    assert server["ports"][0].startswith("127.0.0.1:")
    worker = services["worker"]
    assert "--pool" in worker["entrypoint"] and "process" in worker["entrypoint"]
    assert worker["environment"]["PREFECT_API_URL"].startswith("http://prefect-server:4200")
    assert "healthcheck" in services["postgres"]


def test_no_default_secrets_and_no_open_unauthenticated_dashboard() -> None:
    compose_text = (INFRA / "prefect" / "docker-compose.yml").read_text()
    # ${VAR:-default} would start with a password everyone knows; ${VAR:?msg} refuses instead.
    assert not re.search(r"\$\{(POSTGRES_PASSWORD|PREFECT_AUTH_STRING):-", compose_text)
    services = yaml.safe_load(compose_text)["services"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    assert "PREFECT_API_AUTH_STRING" in services["worker"]["environment"]

    launcher = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    starts = launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"]
    for command in (c for c in starts if "ray start" in c):
        assert "RAY_AUTH_MODE=token" in command and "0.0.0.0" not in command
    assert "--env RAY_AUTH_MODE=token" in launcher["docker"]["run_options"]  # the driver too

    cluster = next(
        d for d in _load_all(INFRA / "k8s" / "raycluster.yaml") if d["kind"] == "RayCluster"
    )
    assert cluster["spec"]["authOptions"] == {"mode": "token"}
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert "0.0.0.0" not in (INFRA / "k8s" / "raycluster.yaml").read_text()


# ---- the manifests against their schemas -------------------------------------------------------


def _errors(schema: dict, doc: object) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def _ray_schema() -> dict:
    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def test_ray_launcher_config_validates_against_rays_own_schema() -> None:
    cfg = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    assert _errors(_ray_schema(), cfg) == []
    # The schema is strict: a misspelt key is an error, not a silently ignored field.
    assert _errors(_ray_schema(), {**cfg, "max_worker": 3})


def test_kuberay_manifest_validates_against_the_raycluster_schema() -> None:
    cluster = next(
        d for d in _load_all(INFRA / "k8s" / "raycluster.yaml") if d["kind"] == "RayCluster"
    )
    assert _errors(RAYCLUSTER_SCHEMA, cluster) == []
    broken = copy.deepcopy(cluster)
    broken["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1  # not a string
    broken["spec"]["headGroupSpec"]["rayStartparams"] = {}  # misspelt: Kubernetes would prune it
    assert len(_errors(RAYCLUSTER_SCHEMA, broken)) == 2


def test_prefect_compose_validates_against_the_compose_schema() -> None:
    compose = yaml.safe_load((INFRA / "prefect" / "docker-compose.yml").read_text())
    assert _errors(COMPOSE_SCHEMA, compose) == []
    broken = copy.deepcopy(compose)
    broken["services"]["prefect-server"]["depends_on"]["postgres"]["condition"] = "healthy"
    broken["services"]["worker"]["enviroment"] = {}
    assert len(_errors(COMPOSE_SCHEMA, broken)) == 2
