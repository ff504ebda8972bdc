"""Ports for the servers flashsale starts: free, and out of the way of outgoing connections."""

from __future__ import annotations

import os
import socket

from flashsale.processes import _ephemeral_low, free_port


def test_a_free_port_lies_below_the_ephemeral_range_outgoing_connections_use() -> None:
    low = _ephemeral_low()
    ports = {free_port() for _ in range(50)}
    assert all(15000 <= p < low for p in ports), sorted(ports)
    assert len(ports) > 40  # picked at random: processes picking at once rarely meet


def test_a_free_port_is_bindable_and_a_taken_one_is_not_handed_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert free_port(preferred=busy) != busy
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
    # A preferred port that is free is the one given.
    assert free_port(preferred=port) == port


def test_a_forked_child_picks_its_own_ports() -> None:
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its picks, to the parent
        os.write(write, ",".join(str(free_port()) for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    theirs = os.read(read, 4096).decode()
    os.waitpid(child, 0)
    mine = ",".join(str(free_port()) for _ in range(5))
    assert theirs and theirs != mine
