"""A 3-node RabbitMQ cluster loses the node leading the work queue while jobs flow.

The stack (ingest, indexer, webhooks, two transcribers with the benchmarks' instant
engine) is given every node's address (`SCRIBE_AMQP_URL`, comma-separated) and quorum
queues on three replicas. Uploads stream in; the node leading `transcriber.audio-uploaded`
is stopped in the middle. Printed, Jepsen-style: `jobs accepted=N completed=N failed=N
lost=N duplicated=N`, and asserted: nothing accepted is lost or ends twice, uploads are
accepted again without restarting any service, and the queue has a new leader.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from scribe_runtime.topology import TRANSCRIBER_QUEUE
from tests.faults.cluster import RabbitCluster, rabbit_cluster
from tests.faults.conftest import FaultServers
from tests.faults.support import Outcomes, fault_stack, submit, tally, wait_terminal
from tests.speech import SCRIPTS, synthesize
from tests.support.servers import unique_name

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(480)]

UPLOADS = 100
INTERVAL_SECONDS = 0.15
STOP_AFTER_ACCEPTED = 20


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[RabbitCluster]:
    # The fault servers (this test uses their PostgreSQL) start while the nodes boot.
    with rabbit_cluster(3, while_booting=lambda: request.getfixturevalue("fault_servers")) as c:
        yield c


def test_stopping_the_work_queues_leader_node_loses_and_duplicates_nothing(
    cluster: RabbitCluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fault_servers: FaultServers = request.getfixturevalue("fault_servers")  # up with the cluster
    vhost = unique_name("cluster")
    amqp_url = cluster.add_vhost(vhost)
    audio = synthesize(SCRIPTS["numbers"])
    answers: list[tuple[int, uuid.UUID | None]] = []
    with (
        fault_servers.postgres.server.fresh_database("cluster") as database_url,
        fault_stack(
            amqp_url,
            database_url,
            tmp_path,
            transcribers=2,
            transcriber_argv=[sys.executable, "-m", "bench.instant"],
            initial_group_size=3,
        ) as stack,
    ):
        assert len(cluster.members(vhost, TRANSCRIBER_QUEUE.name)) == 3
        leader = cluster.leader(vhost, TRANSCRIBER_QUEUE.name)
        # Every service connects to the first listed node, which declared the queues and
        # so leads them: stopping it moves both the queue leaders and the connections.
        clients_before = cluster.clients_on(leader, vhost)

        def upload_stream() -> None:
            for _ in range(UPLOADS):
                answers.append(submit(stack, audio))
                time.sleep(INTERVAL_SECONDS)

        uploader = threading.Thread(target=upload_stream)
        uploader.start()
        while sum(1 for status, _ in answers if status == 202) < STOP_AFTER_ACCEPTED:
            assert uploader.is_alive(), answers
            time.sleep(0.05)
        stopped_at = len(answers)
        started = time.monotonic()
        leader.stop()
        stop_seconds = time.monotonic() - started
        uploader.join(timeout=300)
        assert not uploader.is_alive()
        new_leader = cluster.leader(vhost, TRANSCRIBER_QUEUE.name)
        clients_after = sum(cluster.clients_on(n, vhost) for n in cluster.running())

        accepted = {job for status, job in answers if status == 202 and job is not None}
        rows = wait_terminal(stack.database_url, accepted, timeout=180)
        survivors = [n for n in cluster.nodes if n is not leader]
        result = tally(accepted, rows, Outcomes.drain(cluster.url(vhost, survivors)))
        # No service was restarted: every process started with the stack still runs.
        exited = {name: p.returncode for name, p in stack.processes.items() if p.poll() is not None}
    statuses = [status for status, _ in answers]
    refused = sum(1 for status in statuses if status != 202)
    print(
        f"\n{result.line()} refused={refused} uploads={len(statuses)} "
        f"stopped={leader.node} after_upload={stopped_at} stop_s={stop_seconds:.1f} "
        f"new_leader={new_leader.node} clients_moved={clients_before}->{clients_after}"
    )
    assert clients_before >= 5, "the stopped node served the services' connections"
    assert stopped_at <= UPLOADS - 20, "the node was stopped mid-run"
    assert clients_after >= clients_before
    assert exited == {}, f"processes exited: {exited}"
    assert new_leader is not leader
    assert set(statuses) <= {202, 503}, statuses
    # Uploads were accepted again after the failover, by the same processes.
    assert statuses[-10:] == [202] * 10, statuses
    assert len(accepted) > STOP_AFTER_ACCEPTED
    assert result.lost == []
    assert result.duplicated == []
    assert result.completed == len(accepted)
