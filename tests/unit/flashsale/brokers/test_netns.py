"""Node networks without touching the machine's network: names, the /24 chosen, the `ip`
commands built (the subprocess call is the only thing replaced), and a cluster's layout on it.
"""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flashsale.brokers import netns
from flashsale.brokers.apache import KafkaCluster
from flashsale.brokers.base import BrokerError
from flashsale.brokers.netns import (
    MAX_LINK_NAME,
    NodeNetwork,
    choose_octet,
    parse_name,
)


def test_names_fit_a_link_name_and_carry_the_owner_and_the_network() -> None:
    biggest = NodeNetwork(3, owner=4_194_304, octet=254)  # Linux's largest pid
    assert biggest.bridge == "fsk4194304-febr"
    assert biggest.veth(3) == "fsk4194304-fev3"
    assert biggest.namespace(1) == "fsk4194304-fen1"
    assert all(len(name) <= MAX_LINK_NAME for name in biggest.names())
    assert {parse_name(n) for n in biggest.names()} == {(4_194_304, 254)}
    net = NodeNetwork(3, owner=42, octet=7)
    assert [net.address(i) for i in (1, 2, 3)] == ["10.111.7.1", "10.111.7.2", "10.111.7.3"]
    assert net.gateway == "10.111.7.254"
    assert str(net.subnet) == "10.111.7.0/24"
    assert net.exec_argv(2)[1:] == ["netns", "exec", "fsk42-07n2"]
    with pytest.raises(BrokerError, match="no node 4"):
        net.veth(4)
    with pytest.raises(BrokerError, match="create"):
        _ = NodeNetwork(3).bridge  # no /24 before create()


@pytest.mark.parametrize(
    "name", ["eth0", "fsk", "fsk42-07", "fsk42-7v1", "fsk42-07v12", "fskx-07br", "fs42-07br"]
)
def test_other_names_are_not_ours(name: str) -> None:
    assert parse_name(name) is None


def test_the_chosen_network_starts_at_the_owner_and_skips_taken_and_overlapping_ones() -> None:
    nets = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/0", "10.0.0.0/8", "192.0.2.0/24")]
    # Defaults and wide routes do not count; the start depends on the pid.
    assert choose_octet(9, [], nets) == 10
    assert choose_octet(9 + 254, [], nets) == 10
    assert choose_octet(253, [], nets) == 254
    assert choose_octet(254, [], nets) == 1  # wraps around
    # One of ours, an address on the machine, a single route: each /24 is skipped.
    busy = [*nets, ipaddress.IPv4Network("10.111.11.0/24"), ipaddress.IPv4Network("10.111.12.9")]
    assert choose_octet(9, [10], busy) == 13
    with pytest.raises(BrokerError, match="no free /24"):
        choose_octet(9, range(1, 255), nets)


def test_the_commands_build_a_bridge_and_one_namespace_per_node() -> None:
    net = NodeNetwork(1, owner=42, octet=7)
    assert net.create_commands() == [
        ["link", "add", "fsk42-07br", "type", "bridge"],
        ["addr", "add", "10.111.7.254/24", "dev", "fsk42-07br"],
        ["link", "set", "fsk42-07br", "up"],
        ["netns", "add", "fsk42-07n1"],
        [
            "link",
            "add",
            "fsk42-07v1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            "fsk42-07n1",
        ],
        ["link", "set", "fsk42-07v1", "master", "fsk42-07br"],
        ["link", "set", "fsk42-07v1", "up"],
        ["-n", "fsk42-07n1", "addr", "add", "10.111.7.1/24", "dev", "eth0"],
        ["-n", "fsk42-07n1", "link", "set", "eth0", "up"],
        ["-n", "fsk42-07n1", "link", "set", "lo", "up"],
    ]


class FakeIp:
    """`subprocess.run` for `ip`: answers the listings from sets it keeps, records the rest."""

    def __init__(self, links: list[str], namespaces: list[str], fail: str = "") -> None:
        self.links = set(links)
        self.namespaces = set(namespaces)
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        args = argv[1:]
        out = ""
        if args[:3] == ["-j", "link", "show"]:
            out = json.dumps([{"ifname": n} for n in sorted(self.links)])
        elif args[:3] == ["-j", "netns", "list"]:
            out = json.dumps([{"name": n} for n in sorted(self.namespaces)])
        elif args[:3] == ["-j", "-4", "addr"]:
            addr = {"local": "10.111.1.254", "prefixlen": 24}
            out = json.dumps([{"ifname": "other", "addr_info": [addr]}])
        elif args[:3] == ["-j", "-4", "route"]:
            out = json.dumps([{"dst": "default"}, {"dst": "10.111.2.7"}])
        else:
            self.calls.append(args)
            if self.fail and self.fail in " ".join(args):
                return subprocess.CompletedProcess(argv, 2, "", "RTNETLINK answers: File exists\n")
            if args[:2] == ["link", "add"]:
                self.links.add(args[2])
            if args[:2] == ["link", "del"]:
                self.links.discard(args[2])
            if args[:2] == ["netns", "add"]:
                self.namespaces.add(args[2])
            if args[:2] == ["netns", "del"]:
                self.namespaces.discard(args[2])
        return subprocess.CompletedProcess(argv, 0, out, "")


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(netns, "find_ip", lambda: "ip")
    monkeypatch.setattr(netns, "_lock_path", lambda: tmp_path / "lock")
    # Pid 1 is alive, pid 999999999 is not.
    monkeypatch.setattr(netns, "_pid_alive", lambda pid: pid == 1)


def test_create_removes_a_dead_owners_leftovers_and_takes_a_free_network(
    monkeypatch: pytest.MonkeyPatch, fake_machine: None
) -> None:
    dead = ["fsk999999999-05br", "fsk999999999-05v1", "fsk999999999-05n1"]
    alive = ["fsk1-03br", "fsk1-03v1"]
    ip = FakeIp(links=["eth0", *dead[:2], *alive], namespaces=[dead[2], "fsk1-03n1", "other"])
    monkeypatch.setattr(netns.subprocess, "run", ip)
    net = NodeNetwork(3, owner=0)  # starts looking at 10.111.1.0/24
    net.create()
    # The dead owner's veth, then its bridge, then its namespace; nothing else of anyone's.
    assert ip.calls[:3] == [
        ["link", "del", "fsk999999999-05v1"],
        ["link", "del", "fsk999999999-05br"],
        ["netns", "del", "fsk999999999-05n1"],
    ]
    # .1 has an address on the machine, .2 a route, .3 a live owner's network.
    assert net.octet == 4
    assert ip.calls[3:] == net.create_commands()
    assert {*alive, *net.names()} <= ip.links | ip.namespaces
    net.cut(2)
    net.heal(2)
    assert ip.calls[-2:] == [
        ["link", "set", "fsk0-04v2", "down"],
        ["link", "set", "fsk0-04v2", "up"],
    ]
    ip.calls.clear()
    net.delete()
    assert ip.calls == [
        *(["link", "del", f"fsk0-04v{i}"] for i in (1, 2, 3)),
        ["link", "del", "fsk0-04br"],
        *(["netns", "del", f"fsk0-04n{i}"] for i in (1, 2, 3)),
    ]
    ip.calls.clear()
    net.delete()  # idempotent
    assert ip.calls == []
    assert set(alive) <= ip.links and "fsk1-03n1" in ip.namespaces


def test_a_failed_command_is_one_line_and_what_was_built_is_removed(
    monkeypatch: pytest.MonkeyPatch, fake_machine: None
) -> None:
    ip = FakeIp(links=[], namespaces=[], fail="netns add fsk7-09n2")
    monkeypatch.setattr(netns.subprocess, "run", ip)
    net = NodeNetwork(3, owner=7, octet=9)
    with pytest.raises(BrokerError) as caught:
        net.create()
    assert str(caught.value) == "ip netns add fsk7-09n2 failed: RTNETLINK answers: File exists"
    assert not ip.links and not ip.namespaces
    assert not net.created


def test_without_root_or_ip_namespaces_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestration.cli import main

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "root" in (netns.namespaces_unavailable() or "")
    monkeypatch.setattr(
        sys, "argv", ["flashsale", "kafka", "--nodes", "3", "--network", "namespaces"]
    )
    sigterm = signal.getsignal(signal.SIGTERM)  # main() turns SIGTERM into Ctrl-C
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flashsale: error:") and "root" in err[0]
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns, "find_ip", lambda: None)
    assert "iproute2" in (netns.namespaces_unavailable() or "")


def test_a_namespaced_cluster_listens_advertises_and_votes_on_each_nodes_address(
    tmp_path: Path,
) -> None:
    loopback = KafkaCluster(nodes=3, data=tmp_path)
    loopback._layout()
    ports = [n.port for n in loopback.nodes]
    cluster = KafkaCluster(nodes=3, data=tmp_path, network="namespaces", ports={3: 9999})
    cluster._net = NodeNetwork(3, owner=42, octet=7)
    cluster._layout()
    assert cluster.cluster_id == loopback.cluster_id
    assert cluster.bootstrap == "10.111.7.1:9092,10.111.7.2:9092,10.111.7.3:9999"
    voters = "1@10.111.7.1:9093,2@10.111.7.2:9093,3@10.111.7.3:9093"
    for node in cluster.nodes:
        props = cluster._properties(node)
        assert props["controller.quorum.voters"] == voters
        assert props["listeners"] == (
            f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:9093"
        )
        assert props["advertised.listeners"] == f"PLAINTEXT://{node.host}:{node.port}"
    # The folder keeps its loopback ports for a later cluster on loopback.
    again = KafkaCluster(nodes=3, data=tmp_path)
    again._layout()
    assert [n.port for n in again.nodes] == ports
    with pytest.raises(BrokerError, match="network='namespaces'"):
        again.cut_node(1)
    with pytest.raises(BrokerError, match="not running"):
        again.pause_node(1)
    with pytest.raises(ValueError, match="loopback or namespaces"):
        KafkaCluster(network="mesh")  # type: ignore[arg-type]
