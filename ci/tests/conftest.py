"""Fixtures that run the real `spate` binary for tests with real Kafka clients.

The binary is `$SPATE_BIN`, else `$CARGO_TARGET_DIR/debug/spate`, else `target/debug/spate`
(build it with `cargo build --bin spate`). Each broker gets its own data directory and a free
port on 127.0.0.1; it is stopped with SIGTERM (then SIGKILL) when the test ends. A broker that
died on its own during a test fails that test with the tail of its log.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support import REPO, free_port

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15


def spate_binary() -> Path:
    if os.environ.get("SPATE_BIN"):
        return Path(os.environ["SPATE_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "debug" / "spate"


class Broker:
    """One `spate serve` process; restartable on the same data directory and port."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, config=None):
        self.binary = binary
        self.data_dir = data_dir
        self.log_path = log_path
        self.config = config
        self.port = free_port()
        self.proc = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        assert self.proc is None, "broker already running"
        cmd = [
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
        ]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {self.starts}: {' '.join(cmd)}\n".encode())
        log.flush()
        env = dict(os.environ, RUST_BACKTRACE="1")
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(
                    f"spate exited with {code} during start-up:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    # A connect to a free port from the ephemeral range can pick that same
                    # port as its own and connect to itself (TCP simultaneous open): that
                    # is not the broker listening.
                    if s.getsockname() != s.getpeername():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"spate did not accept connections on {self.bootstrap} within "
            f"{START_TIMEOUT_S}s:\n{self.log_tail()}"
        )

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not exit. Returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is not None:
            raise RuntimeError(
                f"spate had already exited with {proc.returncode}:\n{self.log_tail()}"
            )
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(
                f"spate ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL: the crash case. No chance to flush or write a clean-shutdown marker."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def spate_bin() -> Path:
    path = spate_binary()
    if not path.is_file():
        pytest.fail(f"no spate binary at {path}: run `cargo build --bin spate` or set SPATE_BIN")
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.call_failed = report.failed
    return report


@pytest.fixture
def make_broker(request, spate_bin, tmp_path):
    """Factory: `make_broker(config=None)` returns a started broker, stopped after the test.
    When the test fails, the end of each broker's log is printed with the failure."""
    brokers = []

    def make(config=None) -> Broker:
        n = len(brokers)
        broker = Broker(
            spate_bin,
            tmp_path / f"data{n}",
            tmp_path / f"spate{n}.log",
            config=REPO / config if config else None,
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    if getattr(request.node, "call_failed", False):
        for broker in brokers:
            print(f"--- end of {broker.log_path}:\n{broker.log_tail()}")
    errors = []
    for broker in brokers:
        try:
            broker.stop()
        except RuntimeError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def broker(make_broker) -> Broker:
    return make_broker()

