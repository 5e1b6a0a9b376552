"""Keep the Docker path honest without a Docker engine.

There is no engine on the development and CI machines, so these checks hold
docker-compose.yml and the Dockerfiles against the code: the compose file validates
against the Compose specification, every service's command is a console script the image
installs, every `SCRIBE_*` variable is a real setting, healthchecks hit real routes on the
configured ports, and the Dockerfiles pass hadolint.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from compose_spec import PyOptions
from pydantic_settings import BaseSettings

from indexer.settings import IndexerSettings
from ingest.settings import IngestSettings
from scribe_runtime.settings import SharedSettings
from transcriber.settings import TranscriberSettings
from webhooks.settings import WebhooksSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
APP_SERVICES: dict[str, tuple[type[BaseSettings], ...]] = {
    "ingest": (SharedSettings, IngestSettings),
    "transcriber": (SharedSettings, TranscriberSettings),
    "indexer": (SharedSettings, IndexerSettings),
    "webhooks": (SharedSettings, WebhooksSettings),
}
WORKER_ROUTES = {"/healthz", "/readyz", "/metrics"}


def _compose() -> dict[str, Any]:
    parsed = PyOptions(apply_merge=True).from_yaml(COMPOSE_TEXT)
    parsed.validate()
    return parsed.to_dict()


def _env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def _dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def _cmd(service: str) -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", _dockerfile(service), re.MULTILINE)
    assert match, f"services/{service}/Dockerfile has no exec-form CMD"
    command: list[str] = json.loads(match.group(1))
    return command


def test_compose_validates_against_the_compose_specification() -> None:
    services = _compose()["services"]
    optional = {name for name, service in services.items() if service.get("profiles")}
    # A transcriber service per model pool (`transcriber-<model>` besides the default's).
    assert set(services) - optional == {"rabbitmq", "postgres", "transcriber-base", *APP_SERVICES}
    # Object storage for media is opt-in: `COMPOSE_PROFILES=s3`.
    assert services["object-store"]["profiles"] == ["s3"]
    # So are GPU workers: `COMPOSE_PROFILES=gpu`.
    assert services["transcriber-gpu"]["profiles"] == ["gpu"]


def test_gpu_workers_reserve_a_gpu_and_run_the_gpu_image() -> None:
    spec = _compose()["services"]["transcriber-gpu"]
    assert spec["build"]["dockerfile"] == "services/transcriber/Dockerfile"
    assert re.search(rf"^FROM .* AS {spec['build']['target']}$", _dockerfile("transcriber"), re.M)
    devices = spec["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    known = set().union(*(_env_names(s) for s in APP_SERVICES["transcriber"]))
    assert {n for n in spec["environment"] if n.startswith("SCRIBE_")} <= known
    assert spec["environment"]["SCRIBE_TRANSCRIBER_DEVICE"] == "cuda"
    # The CUDA library CTranslate2 loads is an extra of the transcriber, not a default
    # dependency: the CPU image and `uv sync` stay without it.
    pyproject = tomllib.loads((ROOT / "services" / "transcriber" / "pyproject.toml").read_text())
    gpu = pyproject["project"]["optional-dependencies"]["gpu"]
    assert any(d.startswith("nvidia-cublas-cu12") for d in gpu)
    assert not any(d.startswith("nvidia-") for d in pyproject["project"]["dependencies"])
    assert "--extra gpu" in _dockerfile("transcriber")


@pytest.mark.parametrize("service", APP_SERVICES)
def test_each_service_builds_its_own_dockerfile_and_runs_its_console_script(service: str) -> None:
    spec = _compose()["services"][service]
    assert spec["build"]["dockerfile"] == f"services/{service}/Dockerfile"
    pyproject = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    command = spec.get("command") or _cmd(service)
    assert command[0] in scripts, f"{command[0]} is not a console script of scribe-{service}"
    # The script runs and accepts the given arguments (help only: nothing connects).
    binary = Path(sys.executable).parent / command[0]
    result = subprocess.run(
        [str(binary), *command[1:], "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_scribe_variable_is_a_real_setting(service: str) -> None:
    known = set().union(*(_env_names(s) for s in APP_SERVICES[service]))
    environment = _compose()["services"][service]["environment"]
    dockerfile_env = set(re.findall(r"\b(SCRIBE_[A-Z_]+)=", _dockerfile(service)))
    for name in {*environment, *dockerfile_env}:
        if name.startswith("SCRIBE_"):
            assert name in known, f"{service}: {name} is not a setting of this service"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_healthchecks_hit_real_routes_on_configured_ports(service: str) -> None:
    spec = _compose()["services"][service]
    test = " ".join(spec["healthcheck"]["test"])
    url = urlsplit(re.search(r"http://[^'\" ]+", test).group(0))  # type: ignore[union-attr]
    environment = spec["environment"]
    if service == "ingest":
        from ingest.app import create_app

        assert url.path in create_app().openapi()["paths"]
        assert str(url.port) == environment["SCRIBE_INGEST_PORT"]
        published = [p.split(":")[-1] for p in spec["ports"]]
        assert environment["SCRIBE_INGEST_PORT"] in published
    else:
        assert url.path in WORKER_ROUTES
        assert str(url.port) == environment[f"SCRIBE_{service.upper()}_HEALTH_PORT"]
        assert environment[f"SCRIBE_{service.upper()}_HEALTH_HOST"] == "0.0.0.0"
    # The image's own HEALTHCHECK agrees with compose.
    assert f"127.0.0.1:{url.port}/" in _dockerfile(service)


def test_app_services_wait_for_healthy_dependencies() -> None:
    services = _compose()["services"]
    for name in APP_SERVICES:
        for dependency, condition in services[name]["depends_on"].items():
            assert condition["condition"] == "service_healthy", (name, dependency)
            assert "healthcheck" in services[dependency]


def test_transcriber_is_scalable() -> None:
    transcriber = _compose()["services"]["transcriber"]
    assert "container_name" not in transcriber
    assert "ports" not in transcriber


def test_no_password_default_and_env_example_covers_every_required_variable() -> None:
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE_TEXT))
    assert {
        "RABBITMQ_PASSWORD",
        "POSTGRES_PASSWORD",
        "SCRIBE_INDEXER_DB_PASSWORD",
        "SCRIBE_READER_DB_PASSWORD",
    } <= required
    assert not re.search(r"PASSWORD:-", COMPOSE_TEXT), "a password must not have a default"
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.MULTILINE))
    assert required <= defined


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfiles = [str(ROOT / "services" / s / "Dockerfile") for s in APP_SERVICES]
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", *dockerfiles],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ingest_serves_exactly_the_pools_compose_runs() -> None:
    services = _compose()["services"]
    pools = {
        name: spec["environment"]["SCRIBE_TRANSCRIBER_MODEL"]
        for name, spec in services.items()
        if spec.get("build", {}).get("dockerfile") == "services/transcriber/Dockerfile"
    }
    assert sorted(pools) == ["transcriber", "transcriber-base", "transcriber-gpu"]
    served = json.loads(services["ingest"]["environment"]["SCRIBE_INGEST_SERVED_MODELS"])
    # The default profile runs exactly the served pools; GPU workers join one of them.
    default = {name: model for name, model in pools.items() if not services[name].get("profiles")}
    assert sorted(served) == sorted(default.values())
    assert services["transcriber-gpu"]["profiles"] == ["gpu"]
    assert services["transcriber-gpu"]["environment"]["SCRIBE_TRANSCRIBER_MODEL"] in {
        "${SCRIBE_TRANSCRIBER_GPU_MODEL:-base}"
    }
    for name in pools:
        environment = services[name]["environment"]
        assert environment["SCRIBE_TRANSCRIBER_DEFAULT_MODEL"] == served[0], name
        known = _env_names(SharedSettings) | _env_names(TranscriberSettings)
        assert {n for n in environment if n.startswith("SCRIBE_")} <= known, name
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
