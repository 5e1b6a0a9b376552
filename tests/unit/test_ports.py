"""The tests' spare ports never come from the range outgoing connections use."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import LOWEST, ephemeral_start, free_port, worker_slice


def test_ports_handed_out_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(200)]

    assert len(set(ports)) == len(ports)
    assert all(LOWEST <= port < ephemeral_start() for port in ports), (
        "a port an outgoing connection may take between choosing and binding"
    )
    assert all(port in worker_slice() for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))


def test_each_worker_has_a_slice_of_its_own() -> None:
    slices = [worker_slice(f"gw{n}", ephemeral=32768) for n in range(4)]

    for n, ports in enumerate(slices):
        assert len(ports) > 1000
        assert ports.stop <= 32768
        for other in slices[n + 1 :]:
            assert set(ports).isdisjoint(other)
    assert worker_slice("", ephemeral=32768) == slices[0]  # the controller, or `-n0`


def test_the_kernels_range_is_read_from_proc(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("40000\t60999\n")
    assert ephemeral_start(setting) == 40000
    assert ephemeral_start(tmp_path / "missing") == 32768
