"""Keep the Kubernetes manifests (`infra/k8s/`) honest without a cluster.

Each overlay is rendered (a small kustomize renderer here, checked against `kubectl
kustomize` where that binary exists), every built-in object is validated offline against
Kubernetes' own schemas (`kubernetes-validate`, bundled), KEDA's objects against the CRD
schemas committed from kedacore/keda v2.20.2, and everything is held to the code like
compose is (`test_deploy.py`): each `SCRIBE_*` variable is a setting of that service and
parses, required ones are there, probes hit real routes on the configured ports, the KEDA
trigger counts ready + unacked messages on the topology's transcriber queues, and the
transcriber's grace period covers a chunk.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic_settings import BaseSettings

from indexer.settings import IndexerSettings
from ingest.settings import IngestSettings
from scribe_runtime.settings import SharedSettings
from scribe_runtime.topology import QUEUES, TRANSCRIBER_QUEUE, pool_queue
from transcriber.settings import TranscriberSettings
from webhooks.settings import WebhooksSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "infra" / "k8s"
OVERLAYS = ("dev", "production", "gpu")
KUBERNETES_VERSION = "1.30.0"
"""The oldest Kubernetes the manifests promise to run on (autoscaling/v2, policy/v1)."""
KEDA_SCHEMAS = K8S / "schemas" / "keda-v2.20.2"
SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "ingest": (SharedSettings, IngestSettings),
    "indexer": (SharedSettings, IndexerSettings),
    "transcriber": (SharedSettings, TranscriberSettings),
    "webhooks": (SharedSettings, WebhooksSettings),
    "migrate": (SharedSettings, IndexerSettings),
}
"""Container name → the settings classes its process reads."""
REQUIRED = {
    "ingest": {
        "SCRIBE_AMQP_URL",
        "SCRIBE_INGEST_DATABASE_URL",
        "SCRIBE_INGEST_API_KEYS",
        "SCRIBE_INGEST_CURSOR_SECRET",
    },
    "indexer": {"SCRIBE_AMQP_URL", "SCRIBE_DATABASE_URL"},
    "migrate": {"SCRIBE_DATABASE_URL"},
    "transcriber": {"SCRIBE_AMQP_URL", "SCRIBE_TRANSCRIBER_GRACEFUL_SHUTDOWN_SECONDS"},
    "webhooks": {"SCRIBE_AMQP_URL", "SCRIBE_WEBHOOKS_DATABASE_URL"},
}
"""What each needs beyond the defaults (the defaults name 127.0.0.1 or accept a dev key)."""
WORKER_ROUTES = {"/healthz", "/readyz", "/metrics"}
CHUNK_AUDIO_SECONDS = 300
"""A long job's chunk (≤ 2 minutes of audio by default, at most 10, on the pool's chunk queue)."""
CPU_RTF_BASE = 0.5
"""Whisper base on CPU, int8 (DESIGN.md, bench/models.py): the slowest offline model."""
KEDA_RABBITMQ_METADATA = {
    "queueName", "mode", "value", "activationValue", "host", "protocol", "vhostName",
    "useRegex", "excludeUnacknowledged", "pageSize", "operation", "timeout", "unsafeSsl",
}  # fmt: skip
"""The trigger's metadata keys (`keda:"name=…"` tags of pkg/scalers/rabbitmq_scaler.go at
v2.20.2): the CRD types metadata as a free string map, so a misspelt key would pass."""


# --- a small kustomize: resources, namespace, images, JSON 6902 patches --------------------


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _apply_op(document: Any, op: dict[str, Any]) -> None:
    *parents, last = _pointer(op["path"])
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    kind = op["op"]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if kind == "add":
            node.insert(index, op["value"])
        elif kind == "replace":
            node[index] = op["value"]
        elif kind == "remove":
            del node[index]
        else:
            raise AssertionError(f"unsupported patch op {kind}")
    elif kind in {"add", "replace"}:
        if kind == "replace":
            assert last in node, f"replace of a missing {op['path']}"
        node[last] = op["value"]
    elif kind == "remove":
        del node[last]
    else:
        raise AssertionError(f"unsupported patch op {kind}")


def _containers(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pod = document.get("spec", {}).get("template", {}).get("spec", {})
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build directory`, for the features these manifests use (others fail)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(spec) - {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    assert not unsupported, f"{directory}: the test's renderer does not know {unsupported}"
    documents: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            documents.extend(render(path))
        else:
            documents.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in spec.get("patches", []):
        target = patch["target"]
        hits = [
            d
            for d in documents
            if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        ]
        assert hits, f"{directory}: patch target {target} matches nothing"
        for document in hits:
            for op in yaml.safe_load(patch["patch"]):
                _apply_op(document, op)
    for image in spec.get("images", []):
        for document in documents:
            for container in _containers(document):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = (
                        f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
                    )
    if "namespace" in spec:
        for document in documents:
            document["metadata"]["namespace"] = spec["namespace"]
    return documents


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(K8S / "overlays" / overlay))


def _key(document: dict[str, Any]) -> tuple[str, str]:
    return document["kind"], document["metadata"]["name"]


def _one(documents: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if _key(d) == (kind, name)]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _workloads(documents: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] in {"Deployment", "Job"}]


def _environment(
    documents: tuple[dict[str, Any], ...], container: dict[str, Any]
) -> dict[str, str | None]:
    """Every variable a container gets: ConfigMap values, and None for Secret references."""
    result: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        config = _one(documents, "ConfigMap", source["configMapRef"]["name"])
        result.update(config["data"])
    for variable in container.get("env", []):
        result[variable["name"]] = variable.get("value")
    return result


def _env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def _secret_keys() -> set[str]:
    text = (K8S / "secret.example.env").read_text()
    return set(re.findall(r"^([A-Z0-9_]+)=", text, re.MULTILINE))


# --- the renderer itself -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_renderer_agrees_with_kubectl_kustomize(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the manifests are checked through the test's renderer only")
    built = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    theirs = {_key(d): d for d in yaml.safe_load_all(built) if d}
    ours = {_key(d): d for d in rendered(overlay)}
    assert ours == theirs


def test_the_renderer_applies_patches_images_and_namespaces() -> None:
    """The overlays differ from each other where they say they do (a renderer that
    ignored patches would make every check below vacuous)."""
    dev, gpu = rendered("dev"), rendered("gpu")
    assert {d["metadata"]["namespace"] for d in dev} == {"scribe-dev"}
    assert {d["metadata"]["namespace"] for d in gpu} == {"scribe"}
    transcriber = _one(gpu, "Deployment", "scribe-transcriber")["spec"]["template"]["spec"]
    assert transcriber["containers"][0]["image"].endswith("scribe-transcriber-gpu:latest")
    assert transcriber["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert _one(dev, "ScaledObject", "scribe-transcriber")["spec"]["maxReplicaCount"] == 2


# --- schemas -------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as the API server prunes them (a misspelt
    field would silently do nothing there)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def keda_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((KEDA_SCHEMAS / f"{kind.lower()}.json").read_text())
    return _strict(schema)  # type: ignore[no-any-return]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(overlay: str) -> None:
    kinds = set()
    for document in rendered(overlay):
        kinds.add(document["kind"])
        if document["apiVersion"].startswith("keda.sh/"):
            assert document["apiVersion"] == "keda.sh/v1alpha1"
            jsonschema.validate(copy.deepcopy(document), keda_schema(document["kind"]))
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert kinds == {
        "ConfigMap", "PersistentVolumeClaim", "Job", "Deployment", "Service",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "ScaledObject",
        "TriggerAuthentication",
    }  # fmt: skip


def test_a_schema_violation_is_caught() -> None:
    scaled = copy.deepcopy(_one(rendered("production"), "ScaledObject", "scribe-transcriber"))
    scaled["spec"]["maxReplicas"] = 10  # HPA's name for it, not KEDA's
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema("ScaledObject"))
    deployment = copy.deepcopy(_one(rendered("production"), "Deployment", "scribe-ingest"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- held to the code ----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_scribe_variable_is_a_real_setting_and_parses(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = rendered(overlay)
    seen = set()
    for workload in _workloads(documents):
        for container in _containers(workload):
            seen.add(container["name"])
            classes = SETTINGS[container["name"]]
            known = set().union(*(_env_names(s) for s in classes))
            environment = _environment(documents, container)
            for name in environment:
                if name.startswith("SCRIBE_"):
                    assert name in known, f"{container['name']}: {name} is not a setting"
            missing = REQUIRED[container["name"]] - set(environment)
            assert not missing, f"{container['name']} lacks {missing}"
            # The values given parse as the service would parse them.
            with monkeypatch.context() as env:
                for name, value in environment.items():
                    if value is not None:
                        env.setenv(name, value)
                for settings in classes:
                    settings()
    assert seen == set(SETTINGS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_come_from_the_one_documented_secret(overlay: str) -> None:
    keys = _secret_keys()
    for workload in _workloads(rendered(overlay)):
        for container in _containers(workload):
            for variable in container.get("env", []):
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == "scribe-secrets"
                assert reference["key"] == variable["name"]
                assert reference["key"] in keys, f"{reference['key']} not in secret.example.env"
            for name, value in _environment(rendered(overlay), container).items():
                assert not ("PASSWORD" in name or "SECRET" in name) or value is None, name
    auth = _one(rendered(overlay), "TriggerAuthentication", "scribe-rabbitmq-management")
    assert {r["key"] for r in auth["spec"]["secretTargetRef"]} <= keys


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_real_routes_on_the_configured_ports(overlay: str) -> None:
    from ingest.app import create_app

    ingest_paths = set(create_app().openapi()["paths"])
    documents = rendered(overlay)
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        name = container["name"]
        environment = _environment(documents, container)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        if name == "ingest":
            routes, port = ingest_paths, environment["SCRIBE_INGEST_PORT"]
            assert environment["SCRIBE_INGEST_HOST"] == "0.0.0.0"
        else:
            routes, port = WORKER_ROUTES, environment[f"SCRIBE_{name.upper()}_HEALTH_PORT"]
            assert environment[f"SCRIBE_{name.upper()}_HEALTH_HOST"] == "0.0.0.0"
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in routes, (name, probe)
            assert str(ports[get["port"]]) == port, (name, probe)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_and_commands_are_the_services_own(overlay: str) -> None:
    import tomllib

    for workload in _workloads(rendered(overlay)):
        for container in _containers(workload):
            service = "indexer" if container["name"] == "migrate" else container["name"]
            assert re.search(rf"/scribe-{service}(-gpu)?:|^scribe-{service}:", container["image"])
            dockerfile = (ROOT / "services" / service / "Dockerfile").read_text()
            cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE).group(1))  # type: ignore[union-attr]
            command = container.get("command", cmd)
            pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
            assert command[0] in pyproject["project"]["scripts"]
            # The image's user is the one the pod runs as.
            assert "USER 10001:10001" in dockerfile


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_with_resources_and_disruption_budgets(overlay: str) -> None:
    documents = rendered(overlay)
    budgets = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    for workload in _workloads(documents):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["automountServiceAccountToken"] is False
        for container in _containers(workload):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"])
            assert "memory" in resources["limits"]
        if workload["kind"] == "Deployment":
            labels = workload["spec"]["template"]["metadata"]["labels"]
            covering = [
                b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
            ]
            assert len(covering) == 1, f"{workload['metadata']['name']}: one PDB"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_scales_on_cpu_and_the_transcriber_only_through_keda(overlay: str) -> None:
    documents = rendered(overlay)
    hpas = [d for d in documents if d["kind"] == "HorizontalPodAutoscaler"]
    assert [h["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["scribe-ingest"]
    assert hpas[0]["spec"]["minReplicas"] >= 1
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    assert [s["spec"]["scaleTargetRef"]["name"] for s in scaled] == ["scribe-transcriber"]
    _one(documents, "Deployment", "scribe-transcriber")  # the target exists


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_counts_ready_and_unacked_messages_on_the_transcriber_queues(overlay: str) -> None:
    documents = rendered(overlay)
    scaled = _one(documents, "ScaledObject", "scribe-transcriber")
    triggers = scaled["spec"]["triggers"]
    queues = {spec.name for spec in QUEUES} | {
        pool_queue("large-v3", k).name for k in ("audio", "chunk")
    }
    covered = set()
    for trigger in triggers:
        assert trigger["type"] == "rabbitmq"
        metadata = trigger["metadata"]
        assert set(metadata) <= KEDA_RABBITMQ_METADATA, set(metadata) - KEDA_RABBITMQ_METADATA
        # http mode reads the management API's `messages` (ready + unacknowledged); amqp
        # mode (and excludeUnacknowledged) would count ready messages only, and a worker
        # busy with a long job would look idle.
        assert metadata["protocol"] == "http"
        assert metadata["mode"] == "QueueLength"
        assert metadata.get("excludeUnacknowledged", "false").lower() == "false"
        assert metadata.get("useRegex", "false").lower() == "false"
        assert float(metadata["value"]) >= 1
        assert metadata["queueName"] in queues, f"{metadata['queueName']} is not in topology"
        covered.add(metadata["queueName"])
        auth = _one(documents, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        assert any(r["parameter"] == "host" for r in auth["spec"]["secretTargetRef"])
    # Every queue the Deployment's workers consume drives its scaling: the intake (the
    # router in each) and both queues of the pool it serves; ingest serves that pool.
    deployment = _one(documents, "Deployment", "scribe-transcriber")
    environment = _environment(documents, deployment["spec"]["template"]["spec"]["containers"][0])
    model = environment["SCRIBE_TRANSCRIBER_MODEL"]
    assert model is not None
    assert environment["SCRIBE_TRANSCRIBER_DEFAULT_MODEL"] == model
    work = {
        TRANSCRIBER_QUEUE.name,
        pool_queue(model, "audio").name,
        pool_queue(model, "chunk").name,
    }
    assert work <= covered, f"no trigger for {work - covered}"
    ingest = _one(documents, "Deployment", "scribe-ingest")
    served = _environment(documents, ingest["spec"]["template"]["spec"]["containers"][0])
    assert json.loads(served["SCRIBE_INGEST_SERVED_MODELS"] or "[]") == [model]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_transcribers_grace_period_covers_a_chunk(overlay: str) -> None:
    documents = rendered(overlay)
    deployment = _one(documents, "Deployment", "scribe-transcriber")
    pod = deployment["spec"]["template"]["spec"]
    environment = _environment(documents, pod["containers"][0])
    graceful = float(environment["SCRIBE_TRANSCRIBER_GRACEFUL_SHUTDOWN_SECONDS"] or 0)
    assert graceful >= CHUNK_AUDIO_SECONDS * CPU_RTF_BASE
    # Kubernetes kills at the grace period: the worker's own bound must come first, with
    # time left to publish the outcome and ack.
    assert pod["terminationGracePeriodSeconds"] >= graceful + 15


def test_quorum_queues_are_replicated_on_the_cluster_overlays() -> None:
    def size(overlay: str) -> str:
        config = _one(rendered(overlay), "ConfigMap", "scribe-shared")
        return str(config["data"]["SCRIBE_AMQP_QUORUM_INITIAL_GROUP_SIZE"])

    assert size("production") == "3"
    assert size("gpu") == "3"
    assert size("dev") == "1"
