"""`scribe up --models tiny.en=1,base=1`: the pools it starts, each worker with its model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from scribe_cli.commands.stack import parse_pools, pool_env, transcriber_specs
from scribe_cli.errors import CliError
from scribe_cli.main import app


def test_models_start_each_pool_s_workers_with_their_model() -> None:
    pools = parse_pools("tiny.en=1, base=2")
    assert pools == {"tiny.en": 1, "base": 2}
    env = {"SCRIBE_TENANTS": "default", **pool_env(pools)}
    specs = transcriber_specs(env, pools, cores=6)
    assert [s.name for s in specs] == [
        "transcriber-tiny.en-1",
        "transcriber-base-1",
        "transcriber-base-2",
    ]
    assert [s.env["SCRIBE_TRANSCRIBER_MODEL"] for s in specs] == ["tiny.en", "base", "base"]
    assert {s.env["SCRIBE_TRANSCRIBER_CPU_THREADS"] for s in specs} == {"2"}
    assert len({s.env["SCRIBE_TRANSCRIBER_HEALTH_PORT"] for s in specs}) == 3
    # Every child agrees on the default (the first) and ingest serves exactly these pools.
    for spec in specs:
        assert spec.env["SCRIBE_TRANSCRIBER_DEFAULT_MODEL"] == "tiny.en"
        assert json.loads(spec.env["SCRIBE_INGEST_SERVED_MODELS"]) == ["tiny.en", "base"]


def test_transcribers_n_still_runs_n_workers_of_the_configured_model() -> None:
    specs = transcriber_specs({"SCRIBE_TENANTS": "default"}, 2, cores=2)
    assert [s.name for s in specs] == ["transcriber-1", "transcriber-2"]
    assert all("SCRIBE_TRANSCRIBER_MODEL" not in s.env for s in specs)
    assert all("SCRIBE_INGEST_SERVED_MODELS" not in s.env for s in specs)


@pytest.mark.parametrize(
    "spec",
    ["tiny.en", "tiny.en=0", "tiny.en=x", "=1", "base=1,base=1", "no such/model=1", "base=65"],
)
def test_a_bad_models_spec_is_a_usage_error(spec: str) -> None:
    with pytest.raises(CliError) as raised:
        parse_pools(spec)
    assert raised.value.code == 2
    result = CliRunner().invoke(app, ["up", "--models", spec])
    assert result.exit_code == 2, result.output
