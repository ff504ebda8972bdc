"""A network of its own for each node of a local cluster: Linux network namespaces on a bridge.

`NodeNetwork(nodes).create()` builds, in the host's namespace, a bridge with the address
10.111.Y.254/24 (one free /24 per network, Y chosen from the owner's pid and checked against
every address, route and network of ours already on the machine), and for each node i (1, 2,
3) a namespace with loopback up and one end of a veth pair, address 10.111.Y.i/24, whose other
end is a port of the bridge. Processes started with `exec_argv(i)` (`ip netns exec`, which
execs: the child's pid is the program's) see only that address; clients in the host's
namespace reach every node directly over the bridge, with no routing, NAT or forwarding.

`cut(i)` sets the bridge end of node i's veth down, a pulled cable: nothing goes in or out,
to the other nodes or to clients; `heal(i)` sets it up again. `delete()` removes the links
and namespaces and may be called any number of times.

Every name starts with `fsk`, then the owner's pid and the /24's third octet in hex
(`fsk4242-1a` + `br`, `v1`…, `n1`…: at most 15 characters, the limit of a link's name), so the
leftovers of an owner that died without `delete()` are found by name and removed by the next
`create()` on the machine. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2's `ip`.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from flashsale.brokers.base import BrokerError

__all__ = [
    "PREFIX",
    "NodeNetwork",
    "choose_octet",
    "find_ip",
    "namespaces_unavailable",
    "parse_name",
]

#: The first characters of every link and namespace name of ours.
PREFIX = "fsk"
#: Networks are 10.111.Y.0/24 (Y = 1…254): the bridge is .254, node i is .i.
FIRST_OCTETS = (10, 111)
#: Linux's limit on a link's name (IFNAMSIZ minus the terminating NUL).
MAX_LINK_NAME = 15
#: The most nodes a network has (one digit in the names).
MAX_NODES = 9

_NAME = re.compile(rf"^{PREFIX}(\d+)-([0-9a-f]{{2}})(br|v\d|n\d)$")


def parse_name(name: str) -> tuple[int, int] | None:
    """(owner pid, third octet) of one of our link or namespace names, else None."""
    found = _NAME.match(name)
    if found is None:
        return None
    return int(found.group(1)), int(found.group(2), 16)


def find_ip() -> str | None:
    """The path of iproute2's `ip`, also where PATH lacks the sbin folders."""
    return shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip") if os.access(p, os.X_OK)), None
    )


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be built here (one line), or None when they can."""
    if not hasattr(os, "geteuid") or not os.path.isdir("/proc/self/ns"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add, veth pairs, a bridge)"
    if find_ip() is None:
        return "network namespaces need iproute2's ip: `apt-get install iproute2`"
    return None


def _subnet(octet: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"{FIRST_OCTETS[0]}.{FIRST_OCTETS[1]}.{octet}.0/24")


def choose_octet(
    owner: int, used_octets: Iterable[int], networks: Iterable[ipaddress.IPv4Network]
) -> int:
    """The third octet of a free 10.111.Y.0/24: Y from `owner`'s pid onwards (so owners
    starting together try different ones first), skipping the octets of our networks and any
    /24 that overlaps an address or route of the machine (networks wider than /16, such as a
    default route or a 10.0.0.0/8 VPN route, are more general than ours and do not count)."""
    used = set(used_octets)
    busy = [n for n in networks if n.prefixlen >= 16]
    start = owner % 254
    for step in range(254):
        octet = (start + step) % 254 + 1
        if octet in used:
            continue
        if any(n.overlaps(_subnet(octet)) for n in busy):
            continue
        return octet
    raise BrokerError(
        f"no free /24 in {FIRST_OCTETS[0]}.{FIRST_OCTETS[1]}.0.0/16 for a node network"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_path() -> Path:
    run = Path("/run")
    base = run if os.access(run, os.W_OK) else Path(tempfile.gettempdir())
    return base / "flashsale-netns.lock"


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """One creator at a time on the machine: choosing a /24 and taking it are one step."""
    with _lock_path().open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ip(*args: str) -> str:
    """Run `ip ARGS`; its stdout, or BrokerError with ip's own first line of complaint."""
    ip = find_ip()
    if ip is None:
        raise BrokerError("iproute2's ip not found: `apt-get install iproute2`")
    done = subprocess.run([ip, *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise BrokerError(f"ip {' '.join(args)} failed: {why.splitlines()[0]}")
    return done.stdout


def _json(*args: str) -> list[dict[str, object]]:
    out = _ip("-j", *args).strip()
    return list(json.loads(out)) if out else []


def _links() -> list[str]:
    return [str(link["ifname"]) for link in _json("link", "show")]


def _namespaces() -> list[str]:
    return [str(ns["name"]) for ns in _json("netns", "list")]


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host's addresses and routes (all tables) cover."""
    found = []
    for link in _json("-4", "addr", "show"):
        infos = link.get("addr_info")
        for info in infos if isinstance(infos, list) else []:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                found.append(
                    ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
                )
    for route in _json("-4", "route", "show", "table", "all"):
        with contextlib.suppress(ValueError):
            found.append(ipaddress.IPv4Network(str(route.get("dst")), strict=False))
    return found


class NodeNetwork:
    """A bridge in the host's namespace and one namespace per node on it (module docstring).

    `owner` (default: this process) is the pid in the names; `octet` fixes the /24 instead of
    choosing one at `create()` (for tests of the names and commands)."""

    def __init__(self, nodes: int, owner: int | None = None, octet: int | None = None) -> None:
        if not 1 <= nodes <= MAX_NODES:
            raise ValueError(f"a node network has 1 to {MAX_NODES} nodes")
        self.nodes = nodes
        self.owner = owner if owner is not None else os.getpid()
        self.octet = octet
        self.created = False

    # -- names and addresses ---------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """What every name of this network begins with: `fsk<pid>-<octet in hex>`."""
        return f"{PREFIX}{self.owner}-{self.subnet.network_address.packed[2]:02x}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        """The network's /24."""
        if self.octet is None:
            raise BrokerError("the node network has no /24 yet: create() it first")
        return _subnet(self.octet)

    @property
    def bridge(self) -> str:
        """The bridge's name, in the host's namespace."""
        return self.prefix + "br"

    @property
    def gateway(self) -> str:
        """The bridge's address: the host's own address on the network (.254)."""
        return str(self.subnet.network_address + 254)

    def _check(self, node: int) -> int:
        if not 1 <= node <= self.nodes:
            raise BrokerError(f"no node {node} in a network of {self.nodes}")
        return node

    def namespace(self, node: int) -> str:
        """Node `node`'s namespace (1-based)."""
        return f"{self.prefix}n{self._check(node)}"

    def veth(self, node: int) -> str:
        """The host's end of node `node`'s veth pair, a port of the bridge (its end inside
        the namespace is `eth0`)."""
        return f"{self.prefix}v{self._check(node)}"

    def address(self, node: int) -> str:
        """Node `node`'s IPv4 address."""
        return str(self.subnet.network_address + self._check(node))

    def exec_argv(self, node: int) -> list[str]:
        """The argv prefix that runs a program inside node `node`'s namespace."""
        return [find_ip() or "ip", "netns", "exec", self.namespace(node)]

    def names(self) -> list[str]:
        """Every link and namespace name of this network."""
        return [
            self.bridge,
            *(self.veth(i) for i in range(1, self.nodes + 1)),
            *(self.namespace(i) for i in range(1, self.nodes + 1)),
        ]

    # -- building and removing -------------------------------------------------------------

    def create_commands(self) -> list[list[str]]:
        """The `ip` arguments that build the network, in order."""
        size = self.subnet.prefixlen
        commands = [
            ["link", "add", self.bridge, "type", "bridge"],
            ["addr", "add", f"{self.gateway}/{size}", "dev", self.bridge],
            ["link", "set", self.bridge, "up"],
        ]
        for i in range(1, self.nodes + 1):
            ns, veth = self.namespace(i), self.veth(i)
            commands += [
                ["netns", "add", ns],
                ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
                ["link", "set", veth, "master", self.bridge],
                ["link", "set", veth, "up"],
                ["-n", ns, "addr", "add", f"{self.address(i)}/{size}", "dev", "eth0"],
                ["-n", ns, "link", "set", "eth0", "up"],
                ["-n", ns, "link", "set", "lo", "up"],
            ]
        return commands

    def create(self) -> None:
        """Remove the leftovers of dead owners, choose a free /24 (unless given) and build
        the network; on a failure, remove what was built and raise BrokerError."""
        if self.created:
            return
        with _machine_lock():
            links, namespaces = _links(), _namespaces()
            sweep_leftovers(links, namespaces, _pid_alive)
            if self.octet is None:
                ours = [parse_name(n) for n in [*_links(), *_namespaces()]]
                self.octet = choose_octet(
                    self.owner, (p[1] for p in ours if p is not None), _host_networks()
                )
            try:
                self.created = True
                for command in self.create_commands():
                    _ip(*command)
            except BaseException:
                with contextlib.suppress(BrokerError):
                    self.delete()
                raise

    def cut(self, node: int) -> None:
        """Node `node`'s cable pulled: its veth's bridge end down, nothing in or out."""
        _ip("link", "set", self.veth(node), "down")

    def heal(self, node: int) -> None:
        """Node `node`'s cable plugged back in."""
        _ip("link", "set", self.veth(node), "up")

    def delete(self) -> None:
        """Remove every link and namespace of this network that exists (idempotent)."""
        if not self.created or self.octet is None:
            return
        remove(self.names(), _links(), _namespaces())
        self.created = False


def remove(names: Iterable[str], links: Iterable[str], namespaces: Iterable[str]) -> None:
    """Delete those of `names` that exist: veth pairs and bridges first (a namespace's own
    links would otherwise linger until the kernel's asynchronous clean-up), then namespaces."""
    wanted = list(names)
    present_links, present_ns = set(links), set(namespaces)
    # Veth ends before the bridge they are ports of; the peer inside a namespace goes with them.
    for name in sorted((n for n in wanted if n in present_links), key=lambda n: n.endswith("br")):
        _ip("link", "del", name)
    for name in wanted:
        if name in present_ns:
            _ip("netns", "del", name)


def sweep_leftovers(
    links: Iterable[str], namespaces: Iterable[str], alive: Callable[[int], bool]
) -> list[str]:
    """Remove our links and namespaces whose owner pid no longer runs; return their names."""
    links, namespaces = list(links), list(namespaces)
    dead = []
    for name in [*links, *namespaces]:
        parsed = parse_name(name)
        if parsed is not None and parsed[0] != os.getpid() and not alive(parsed[0]):
            dead.append(name)
    if dead:
        remove(dead, links, namespaces)
    return dead
