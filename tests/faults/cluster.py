"""A 3-node RabbitMQ cluster on this machine, for the cluster fault test.

Each node is a `RabbitNode` of the fault suite (its own node name, AMQP and distribution
ports, data and log directories); they share the Erlang cookie of the user they run as,
and nodes 2 and 3 join node 1 with `rabbitmqctl join_cluster`. No management plugin (its
default port is the shared node's): queue leaders come from `rabbitmqctl list_queues`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import RabbitNode


@dataclass
class RabbitCluster:
    nodes: list[RabbitNode]
    base: Path

    def url(self, vhost: str, nodes: list[RabbitNode] | None = None) -> str:
        """`SCRIBE_AMQP_URL` for the cluster: every node's URL, comma-separated."""
        return ",".join(f"{node.amqp_url}{vhost}" for node in nodes or self.nodes)

    def running(self) -> list[RabbitNode]:
        return [n for n in self.nodes if n.ctl("ping", timeout=20).returncode == 0]

    def add_vhost(self, vhost: str) -> str:
        self.nodes[0].add_vhost(vhost)  # cluster-wide: every node serves it
        return self.url(vhost)

    def leader(self, vhost: str, queue: str) -> RabbitNode:
        """The node leading a quorum queue now (asked of any running node)."""
        for asked in self.running():
            done = asked.ctl(
                "list_queues", "-p", vhost, "name", "leader", "members", "--formatter", "json"
            )
            if done.returncode != 0:
                continue
            for row in json.loads(done.stdout):
                if row["name"] == queue:
                    return next(n for n in self.nodes if n.node == row["leader"])
        raise AssertionError(f"no running node names the leader of {queue}")

    def clients_on(self, node: RabbitNode, vhost: str) -> int:
        """Client connections to `node` in the vhost (a connection's name ends with the
        server's address, `127.0.0.1:<client port> -> 127.0.0.1:<node port>`)."""
        asked = next(n for n in self.running() if n is not node or len(self.running()) == 1)
        done = asked.ctl("list_connections", "-p", vhost, "name", "--formatter", "json")
        assert done.returncode == 0, done.stderr
        return sum(1 for r in json.loads(done.stdout) if r["name"].endswith(f":{node.port}"))

    def members(self, vhost: str, queue: str) -> list[str]:
        asked = self.running()[0]
        done = asked.ctl("list_queues", "-p", vhost, "name", "members", "--formatter", "json")
        assert done.returncode == 0, done.stderr
        return next(r["members"] for r in json.loads(done.stdout) if r["name"] == queue)


def _form(nodes: list[RabbitNode]) -> None:
    first = nodes[0]
    for node in nodes[1:]:
        for args in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
            done = node.ctl(*args, timeout=120)
            assert done.returncode == 0, f"{node.node} {args}: {done.stderr}\n{node.logs()}"
    status = first.ctl("cluster_status", "--formatter", "json")
    assert status.returncode == 0, status.stderr
    running = set(json.loads(status.stdout)["running_nodes"])
    assert running == {n.node for n in nodes}, running


@contextlib.contextmanager
def rabbit_cluster(size: int = 3) -> Iterator[RabbitCluster]:
    """`size` nodes started and clustered; every node stopped and its data removed after,
    whatever happened (a test that fails mid-way leaves no node running)."""
    base = Path(tempfile.mkdtemp(prefix="scribe-cluster-"))
    base.chmod(0o755)
    nodes: list[RabbitNode] = []
    try:
        for index in range(1, size + 1):
            node = RabbitNode.create(base / f"node-{index}")
            nodes.append(node)
            node.start()
        _form(nodes)
        yield RabbitCluster(nodes, base)
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.stop()
        shutil.rmtree(base, ignore_errors=True)
