"""A 3-node RabbitMQ cluster on this machine, for the cluster fault test.

Each node is a `RabbitNode` of the fault suite (its own node name, AMQP and distribution
ports, data and log directories); they share the Erlang cookie of the user they run as,
and nodes 2 and 3 join node 1 with `rabbitmqctl join_cluster`. No management plugin (its
default port is the shared node's): queue leaders come from `rabbitmqctl list_queues`.

The nodes boot at the same time and stop at the same time (each is its own Erlang VM, and
most of a boot is waiting); the joins stay one after the other, as RabbitMQ asks.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
        """The nodes that answer a ping (asked all at once: each ask boots a CLI VM)."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            answers = list(pool.map(lambda n: n.ctl("ping", timeout=20).returncode, self.nodes))
        return [n for n, code in zip(self.nodes, answers, strict=True) if code == 0]

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
        running = self.running()
        asked = next(n for n in running if n is not node or len(running) == 1)
        done = asked.ctl("list_connections", "-p", vhost, "name", "--formatter", "json")
        assert done.returncode == 0, done.stderr
        return sum(1 for r in json.loads(done.stdout) if r["name"].endswith(f":{node.port}"))

    def members(self, vhost: str, queue: str) -> list[str]:
        asked = self.running()[0]
        done = asked.ctl("list_queues", "-p", vhost, "name", "members", "--formatter", "json")
        assert done.returncode == 0, done.stderr
        return next(r["members"] for r in json.loads(done.stdout) if r["name"] == queue)


def _each(
    nodes: list[RabbitNode],
    action: Callable[[RabbitNode], None],
    meanwhile: Callable[[], object] | None = None,
) -> None:
    """`action` on every node at once, `meanwhile` in this thread while they run; the first
    failure is raised once all have ended."""
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        futures = [pool.submit(action, node) for node in nodes]
        if meanwhile is not None:
            meanwhile()
        for future in futures:
            future.result()


def _stop_quietly(node: RabbitNode) -> None:
    with contextlib.suppress(Exception):
        node.stop()


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
def rabbit_cluster(
    size: int = 3, while_booting: Callable[[], object] | None = None
) -> Iterator[RabbitCluster]:
    """`size` nodes started and clustered; every node stopped and its data removed after,
    whatever happened (a test that fails mid-way leaves no node running).

    `while_booting` runs in this thread while the nodes boot (other set-up the test needs).
    """
    base = Path(tempfile.mkdtemp(prefix="scribe-cluster-"))
    base.chmod(0o755)
    nodes: list[RabbitNode] = []
    try:
        nodes.extend(RabbitNode.create(base / f"node-{index}") for index in range(1, size + 1))
        _each(nodes, RabbitNode.start, while_booting)
        _form(nodes)
        yield RabbitCluster(nodes, base)
    finally:
        if nodes:
            _each(nodes, _stop_quietly)
        shutil.rmtree(base, ignore_errors=True)
