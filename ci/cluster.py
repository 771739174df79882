#!/usr/bin/env python3
"""Starts a Spate cluster on this machine, for tests and demos (python3, standard library only).

    ci/cluster.py                                        # 3 controller-only + 3 broker-only nodes
    ci/cluster.py --brokers 5 --controllers 3
    ci/cluster.py --combined 3 --brokers 0 --controllers 0  # 3 nodes with both roles
    ci/cluster.py --brokers 1 --controllers 0             # one standalone node (its own voter)
    ci/cluster.py --set min.insync.replicas=2 --profile tuning/sata-commodity.yaml

Writes one YAML profile per node under --dir: the --profile (a tuning profile) with the
node's identity, roles, listeners, log.dirs and the controller quorum replaced, failure
detection shortened to seconds (TEST_SETTINGS), then the --set keys. Starts the controllers,
then the brokers, waits until every broker lists every broker, prints the bootstrap servers and
runs until Ctrl-C (or SIGTERM), then stops every node with SIGTERM (brokers first, so they
leave while the quorum is still there). Node logs stay in --dir.

Imported by the tests (ci/tests/test_cluster.py):

    cluster = Cluster(tmp_path, brokers=3, controllers=3, settings={...})
    cluster.start()                       # every node up, every broker registered
    cluster.node(4).kill()                # SIGKILL; .stop() is SIGTERM; .start() restarts
    cluster.wait_brokers_listed()         # after a restart
    cluster.stop()

With `proxied=True`, other nodes and clients reach each broker, and brokers reach the
controllers, through TCP proxies in this process (`cluster.network`), so a test can cut the
links between chosen nodes (see Network).
"""

import argparse
import ctypes
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# Failure detection for tests and demos: a killed broker is fenced, and a stalled follower
# leaves the ISR, within seconds rather than Kafka's 9 s / 30 s. Heartbeats stay several
# per session so a busy 2-core machine does not fence live brokers.
TEST_SETTINGS = {
    "broker.heartbeat.interval.ms": 500,
    "broker.session.timeout.ms": 4000,
    "replica.lag.time.max.ms": 5000,
    # One executor per node: many nodes share few cores.
    "shards": 1,
}

# The keys each node's identity and place in the cluster set; a base profile's values for
# them are dropped.
IDENTITY_KEYS = (
    "node.id",
    "process.roles",
    "listeners",
    "advertised.listeners",
    "controller.listener.names",
    "log.dirs",
    "log.dir",
    "controller.quorum.voters",
)

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30

_ports_handed_out = set()


def free_port() -> int:
    """A port nothing listens on now, never the same twice in this process: brokers bind with
    SO_REUSEPORT, so a port handed out twice could be shared by two nodes unnoticed."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def default_binary() -> Path:
    """`$SPATE_BIN`, else the debug build in `$CARGO_TARGET_DIR` (or target/), as the tests
    use; `release=True` callers pass their own path."""
    if os.environ.get("SPATE_BIN"):
        return Path(os.environ["SPATE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "spate"


def listening(port: int) -> bool:
    """True when something accepts TCP connections on HOST:port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as s:
            # A connect to a free ephemeral port can pick that same port as its own and
            # connect to itself (TCP simultaneous open): that is not a listener.
            return s.getsockname() != s.getpeername()
    except OSError:
        return False


def metadata_brokers(port: int, timeout: float = 3.0) -> dict:
    """Asks the broker at HOST:port for Metadata (v1, no topics) and returns the brokers it
    lists, {node_id: (host, port)}. Raises OSError or ValueError when it cannot."""
    client = b"spate-cluster"
    body = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", 0)
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        if not 0 < size <= 1 << 24:
            raise ValueError(f"metadata response of {size} bytes")
        data = _recv_exact(s, size)
    at = 4  # correlation id
    (count,) = struct.unpack_from(">i", data, at)
    at += 4
    brokers = {}
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", data, at)
        at += 6
        host = data[at : at + host_len].decode()
        at += host_len
        (bport, rack_len) = struct.unpack_from(">ih", data, at)
        at += 6 + max(rack_len, 0)
        brokers[node_id] = (host, bport)
    return brokers


def controller_view(port: int, node_id: int, timeout: float = 3.0):
    """Asks the controller `node_id` at HOST:port which controller is active, in Spate's
    controller protocol (u32 length, JSON body): a read-only WatchImage that the active
    controller answers at once and the others answer with the leader they know. Returns a
    node id, or None if this controller knows no leader."""
    body = json.dumps({"WatchImage": {"image_version": 2**64 - 1, "max_wait_ms": 0}}).encode()
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">I", len(body)) + body)
        (size,) = struct.unpack(">I", _recv_exact(s, 4))
        if size > 1 << 24:
            raise ValueError(f"controller answer of {size} bytes")
        answer = json.loads(_recv_exact(s, size))
    if "Image" in answer:
        return node_id
    return answer["NotController"]["leader"]


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise OSError("connection closed mid-response")
        buf += chunk
    return buf


def yaml_value(value) -> str:
    """A flat profile value: lists as `[a, b]`, strings JSON-quoted (valid YAML)."""
    if isinstance(value, _RawYaml):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return "null" if value is None else str(value)


def profile_text(base: Path, settings: dict) -> str:
    """The base profile without its identity keys and the keys `settings` sets, then
    `settings`. Profiles are flat `key: value` lines (tuning/README.md), so dropping a key
    drops its line."""
    key_line = re.compile(r"^([A-Za-z0-9_.]+)\s*:")
    kept = []
    for line in base.read_text().splitlines():
        m = key_line.match(line)
        if m and (m.group(1) in settings or m.group(1) in IDENTITY_KEYS):
            continue
        kept.append(line)
    kept.append("")
    kept.append("# Set by ci/cluster.py for this node:")
    kept += [f"{k}: {yaml_value(v)}" for k, v in settings.items()]
    return "\n".join(kept) + "\n"


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it exits, so a
    crashed or killed test run leaves no nodes behind."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class NodeDied(RuntimeError):
    """A node that should be running has exited."""


class Process:
    """One `spate serve` process and its log file: started (and waited for until it listens),
    stopped with SIGTERM (SIGKILL after a bounded wait), killed, restarted. Subclasses give
    the command line and the port that says it is up."""

    def __init__(self, binary: Path, log_path: Path):
        self.binary = binary
        self.log_path = log_path
        self.proc = None
        self.starts = 0

    def command(self) -> list:
        raise NotImplementedError

    def listen_port(self) -> int:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.proc is not None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Starts the process and waits until it accepts connections."""
        self.launch()
        self.wait_listening(timeout)

    def launch(self) -> None:
        """Starts the process without waiting for it."""
        assert self.proc is None, f"{self} already running"
        cmd = self.command()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== start {self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            env = dict(os.environ, RUST_BACKTRACE="1")
            # openraft's INFO lines (every vote and election) would bury the node's own.
            env.setdefault("RUST_LOG", "info,openraft=warn")
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # Out of the terminal's process group, so Ctrl-C reaches the launcher alone
                # and it stops the nodes in order; killed with the launcher if it dies.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> None:
        port = self.listen_port()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if listening(port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"{self} did not listen on {HOST}:{port} within {timeout}s:\n{self.log_tail()}"
        )

    def check_alive(self) -> None:
        """Raises NodeDied (with the end of the log) if the process exited by itself."""
        if self.proc is not None and self.proc.poll() is not None:
            code = self.proc.returncode
            self.proc = None
            raise NodeDied(f"{self} exited with {code}:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait (SIGKILL after `timeout`, then raise). Returns the exit code."""
        self.terminate()
        return self.wait_stopped(timeout)

    def terminate(self) -> None:
        """Sends SIGTERM without waiting (see wait_stopped)."""
        self.check_alive()
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = STOP_TIMEOUT_S) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{self} ignored SIGTERM for {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the crash case (no flush, no clean-shutdown marker, no goodbye)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


class Node(Process):
    """A cluster node: its own profile, data directory, ports and log file; restartable on
    the same ports and data. `start` waits for the broker listener (else the controller
    listener); a broker listens once it has registered with the quorum, which is Cluster's
    to wait for."""

    def __init__(self, node_id: int, roles: tuple, root: Path, binary: Path):
        super().__init__(binary, root / f"node-{node_id}.log")
        self.node_id = node_id
        self.roles = roles
        self.dir = root / f"node-{node_id}"
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "profile.yaml"
        self.broker_port = free_port() if self.is_broker else None
        self.controller_port = free_port() if self.is_controller else None
        # Where other nodes and clients dial this broker: the port itself, or a proxy's.
        self.advertised_port = self.broker_port

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles

    @property
    def is_controller(self) -> bool:
        return "controller" in self.roles

    @property
    def address(self) -> str:
        """The advertised broker address, `127.0.0.1:PORT`."""
        return f"{HOST}:{self.advertised_port}"

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "down"
        return f"node {self.node_id} ({'+'.join(self.roles)}, {state})"

    def command(self) -> list:
        return [str(self.binary), "serve", "--config", str(self.config_path)]

    def listen_port(self) -> int:
        return self.broker_port or self.controller_port


class Cluster:
    """Controller-only, combined and broker-only nodes on 127.0.0.1, each with its own ports,
    data directory (under `root`), profile and log. Node ids: controllers 1.., then combined
    nodes, then brokers. One broker and no controllers is a standalone node: no quorum keys
    are written and it runs its own single voter."""

    def __init__(
        self,
        root: Path,
        brokers: int = 3,
        controllers: int = 3,
        combined: int = 0,
        profile: Path = REPO / "tuning" / "default.yaml",
        settings: dict = None,
        binary: Path = None,
        proxied: bool = False,
    ):
        if brokers + combined == 0:
            raise ValueError("a cluster needs at least one broker (--brokers or --combined)")
        self.standalone = brokers == 1 and controllers == 0 and combined == 0
        if controllers + combined == 0 and not self.standalone:
            raise ValueError(
                "several brokers need a controller quorum (--controllers or --combined)"
            )
        if proxied and (combined or self.standalone):
            raise ValueError("proxied clusters need controller-only and broker-only nodes")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.profile = Path(profile)
        self.settings = dict(settings or {})
        # Kafka creates __consumer_offsets only once offsets.topic.replication.factor (3)
        # brokers are alive: a smaller cluster gets one replica per broker.
        self.settings.setdefault("offsets.topic.replication.factor", min(3, brokers + combined))
        self.binary = Path(binary) if binary else default_binary()
        if not self.binary.is_file():
            raise FileNotFoundError(
                f"no spate binary at {self.binary}: `cargo build --bin spate` or set SPATE_BIN"
            )
        layout = [("controller",)] * controllers + [("broker", "controller")] * combined
        layout += [("broker",)] * brokers
        self.nodes = [Node(i + 1, roles, self.root, self.binary) for i, roles in enumerate(layout)]
        self.network = Network(self) if proxied else None
        if self.network is not None:
            for n in self.brokers:
                n.advertised_port = self.network.add_proxy(n.node_id, n.broker_port)
            # Brokers reach each controller through a proxy; controllers talk directly (a
            # controller's own voter entry must be its listener).
            self.controller_proxies = {
                n.node_id: self.network.add_proxy(n.node_id, n.controller_port)
                for n in self.controllers
            }

    # --- who is who ---

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    @property
    def brokers(self) -> list:
        return [n for n in self.nodes if n.is_broker]

    @property
    def controllers(self) -> list:
        return [n for n in self.nodes if n.is_controller]

    @property
    def bootstrap(self) -> str:
        """Every broker's advertised address, comma-separated, for `bootstrap.servers`."""
        return ",".join(n.address for n in self.brokers)

    def bootstrap_of(self, *node_ids: int) -> str:
        return ",".join(self.node(i).address for i in node_ids)

    def voters(self, for_node: Node) -> str:
        """`controller.quorum.voters` as `for_node` dials them."""
        proxied = self.network is not None and not for_node.is_controller
        return ",".join(
            f"{c.node_id}@{HOST}:"
            f"{self.controller_proxies[c.node_id] if proxied else c.controller_port}"
            for c in self.controllers
        )

    # --- profiles ---

    def node_settings(self, node: Node) -> dict:
        if self.standalone:
            identity = {
                "node.id": node.node_id,
                "listeners": f"PLAINTEXT://{HOST}:{node.broker_port}",
            }
        else:
            listeners = []
            if node.is_broker:
                listeners.append(f"PLAINTEXT://{HOST}:{node.broker_port}")
            if node.is_controller:
                listeners.append(f"CONTROLLER://{HOST}:{node.controller_port}")
            identity = {
                "node.id": node.node_id,
                "process.roles": list(node.roles),
                "listeners": ",".join(listeners),
                "controller.listener.names": "CONTROLLER",
                "controller.quorum.voters": self.voters(node),
                "default.replication.factor": min(3, len(self.brokers)),
            }
            if node.is_broker and node.advertised_port != node.broker_port:
                identity["advertised.listeners"] = f"PLAINTEXT://{node.address}"
            identity.update(TEST_SETTINGS)
        identity["log.dirs"] = str(node.data_dir)
        return {**identity, **self.settings}

    def write_profiles(self) -> None:
        for n in self.nodes:
            n.dir.mkdir(parents=True, exist_ok=True)
            n.config_path.write_text(profile_text(self.profile, self.node_settings(n)))

    # --- life cycle ---

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Writes the profiles, starts controllers then brokers, and waits until every node
        listens and every broker lists every broker in its metadata."""
        self.write_profiles()
        try:
            # All at once: a combined node listens for clients only once a quorum of voters
            # (other nodes) is up.
            for n in self.controllers + [b for b in self.brokers if not b.is_controller]:
                n.launch()
            for n in self.nodes:
                n.wait_listening(timeout)
            self.wait_brokers_listed(timeout=timeout)
        except BaseException:
            self.stop(raise_errors=False)
            raise

    def running_brokers(self) -> list:
        return [n for n in self.brokers if n.running]

    def check_alive(self) -> None:
        """Raises NodeDied if any node that should run has exited by itself."""
        for n in self.nodes:
            n.check_alive()

    def wait_brokers_listed(self, node_ids=None, timeout: float = START_TIMEOUT_S) -> None:
        """Waits until every running broker's metadata lists the brokers `node_ids` (default:
        every running broker), i.e. they registered and are not fenced."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            self.check_alive()
            running = self.running_brokers()
            wanted = set(node_ids) if node_ids is not None else {n.node_id for n in running}
            try:
                views = {n.node_id: set(metadata_brokers(n.broker_port)) for n in running}
                if all(wanted <= ids for ids in views.values()):
                    return
                last = views
            except (OSError, ValueError, struct.error) as e:
                last = e
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"brokers {sorted(wanted)} not all listed within {timeout}s; last views "
                    f"{last}\n{self.log_tails()}"
                )
            time.sleep(0.2)

    def stop(self, raise_errors: bool = True) -> None:
        """SIGTERM to every running broker, then to the controllers; waits for each."""
        errors = []
        for group in ([n for n in self.nodes if n.is_broker], self.controllers):
            for n in group:
                try:
                    n.terminate()
                except NodeDied as e:
                    errors.append(str(e))
            for n in group:
                try:
                    n.wait_stopped()
                except RuntimeError as e:
                    errors.append(str(e))
        if self.network is not None:
            self.network.close()
        if errors and raise_errors:
            raise RuntimeError("\n".join(errors))

    def kill_all(self) -> None:
        for n in self.nodes:
            n.kill()
        if self.network is not None:
            self.network.close()

    def active_controller(self):
        """The controller every running controller agrees is the active one (asked over the
        controller protocol), or None: no running controller, none active yet, or the
        answers disagree (an election under way)."""
        running = [c for c in self.controllers if c.running]
        views = set()
        for c in running:
            try:
                views.add(controller_view(c.controller_port, c.node_id))
            except (OSError, ValueError, KeyError, TypeError):
                return None
        if len(views) == 1:
            (leader,) = views
            if any(c.node_id == leader for c in running):
                return leader
        return None

    def log_tails(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {n} {n.log_path}:\n{n.log_tail(lines)}" for n in self.nodes
        )


class Network:
    """TCP proxies in front of nodes' listeners that can cut chosen links.

    Each proxy forwards to one node's listener. When a connection arrives, the proxy finds
    which process opened it (its socket in /proc/net/tcp, then the process holding that
    socket): a node of the cluster (its id), this process ("client": the test's own Kafka
    clients), or "other". `cut(a, b)` closes every proxied connection between a and b, in
    either direction, and refuses new ones until `heal()`."""

    CLIENT = "client"
    OTHER = "other"

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.lock = threading.Lock()
        self.cuts = set()  # frozenset({a, b})
        self.proxies = []

    def add_proxy(self, target, upstream_port: int) -> int:
        proxy = _Proxy(self, target, upstream_port)
        self.proxies.append(proxy)
        return proxy.port

    def cut(self, a, b) -> None:
        with self.lock:
            self.cuts.add(frozenset((a, b)))
        for p in self.proxies:
            p.close_blocked()

    def isolate(self, node_id: int) -> None:
        """Cuts `node_id` from every other node (not from this process's clients)."""
        for n in self.cluster.nodes:
            if n.node_id != node_id:
                self.cut(node_id, n.node_id)

    def heal(self, a=None, b=None) -> None:
        """Restores the link between a and b, or every link when none is named."""
        with self.lock:
            if a is None:
                self.cuts.clear()
            else:
                self.cuts.discard(frozenset((a, b)))

    def blocked(self, a, b) -> bool:
        with self.lock:
            return frozenset((a, b)) in self.cuts

    def origin(self, peer_port: int, proxy_port: int):
        """Who opened the connection from HOST:peer_port to the proxy on proxy_port."""
        inode = _socket_inode(peer_port, proxy_port)
        if inode is not None:
            owners = {os.getpid(): self.CLIENT}
            owners.update({n.pid: n.node_id for n in self.cluster.nodes if n.running})
            pid = _pid_holding(inode, owners)
            if pid is not None:
                return owners[pid]
        return self.OTHER

    def close(self) -> None:
        for p in self.proxies:
            p.close()


def _socket_inode(local_port: int, remote_port: int):
    """The inode of the IPv4 TCP socket HOST:local_port -> HOST:remote_port, if any."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (
                int(local.split(":")[1], 16) == local_port
                and int(remote.split(":")[1], 16) == remote_port
            ):
                return int(fields[9])
    return None


def _pid_holding(inode: int, pids) -> int:
    """Which of `pids` holds the socket `inode` open, if any."""
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                pass
    return None


class _Proxy:
    """Forwards HOST:port to one node's listener, dropping connections the Network cuts."""

    def __init__(self, network: Network, target, upstream_port: int):
        self.network = network
        self.target = target
        self.upstream_port = upstream_port
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns = []  # (origin, client socket, upstream socket)
        self.listener = socket.create_server((HOST, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, (_, peer_port) = self.listener.accept()
            except OSError:
                return
            origin = self.network.origin(peer_port, self.port)
            if self.network.blocked(origin, self.target):
                client.close()
                continue
            try:
                upstream = socket.create_connection((HOST, self.upstream_port))
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.append((origin, client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(262144)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks) -> None:
        with self.lock:
            self.conns = [c for c in self.conns if c[1] not in socks and c[2] not in socks]
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close_blocked(self) -> None:
        with self.lock:
            doomed = [c for c in self.conns if self.network.blocked(c[0], self.target)]
        for _, client, upstream in doomed:
            self._drop(client, upstream)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            conns = list(self.conns)
        for _, client, upstream in conns:
            self._drop(client, upstream)


def parse_setting(text: str):
    """`key=value` from the command line; the value is kept as YAML text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), _RawYaml(value.strip())


class _RawYaml(str):
    """A command-line value written into the profile as typed (`2`, `true`, `[a, b]`)."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Start a Spate cluster on 127.0.0.1 until Ctrl-C.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--brokers", type=int, default=3, help="broker-only nodes")
    parser.add_argument("--controllers", type=int, default=3, help="controller-only nodes")
    parser.add_argument("--combined", type=int, default=0, help="nodes with both roles")
    parser.add_argument(
        "--profile", type=Path, default=REPO / "tuning" / "default.yaml", help="base profile"
    )
    parser.add_argument(
        "--set", type=parse_setting, action="append", default=[], metavar="KEY=VALUE",
        help="a profile key for every node (repeatable)",
    )
    parser.add_argument(
        "--dir", type=Path, help="profiles, data and logs (default: a new temp dir)"
    )
    parser.add_argument(
        "--binary", type=Path, help="the spate binary (default: $SPATE_BIN or the debug build)"
    )
    args = parser.parse_args(argv)

    root = args.dir or Path(tempfile.mkdtemp(prefix="spate-cluster-"))
    cluster = Cluster(
        root,
        brokers=args.brokers,
        controllers=args.controllers,
        combined=args.combined,
        profile=args.profile,
        settings=dict(args.set),
        binary=args.binary,
    )
    print(f"starting {len(cluster.nodes)} nodes from {cluster.binary} in {root}", flush=True)
    try:
        cluster.start()
    except (RuntimeError, TimeoutError) as e:
        print(f"cluster did not start: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for n in cluster.nodes:
        ports = ", ".join(
            f"{name} {HOST}:{port}"
            for name, port in (("broker", n.broker_port), ("controller", n.controller_port))
            if port
        )
        print(f"  node {n.node_id} [{', '.join(n.roles)}] {ports}, pid {n.pid}, log {n.log_path}")
    print(f"bootstrap servers: {cluster.bootstrap}")
    active = cluster.active_controller()
    if active is not None:
        print(f"active controller: node {active}")
    print("Ctrl-C stops the cluster.", flush=True)
    reported = set()
    while not stop.wait(1.0):
        for n in cluster.nodes:
            try:
                n.check_alive()
            except NodeDied as e:
                if n.node_id not in reported:
                    reported.add(n.node_id)
                    print(f"warning: {e}", file=sys.stderr, flush=True)
    print("stopping (SIGTERM: brokers, then controllers)", flush=True)
    try:
        cluster.stop()
    except RuntimeError as e:
        print(f"unclean stop: {e}", file=sys.stderr)
        return 1
    print(f"stopped; logs and data stay in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
