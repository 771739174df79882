"""Fixtures that run the real `spate` binary for tests with real Kafka clients.

The binary is `$SPATE_BIN`, else `$CARGO_TARGET_DIR/debug/spate`, else `target/debug/spate`
(build it with `cargo build --bin spate`). Each broker gets its own data directory and a free
port on 127.0.0.1; it is stopped with SIGTERM (then SIGKILL) when the test ends. A broker that
died on its own during a test fails that test with the tail of its log. The process handling
is ci/cluster.py's, shared with the cluster tests.
"""

from pathlib import Path

import pytest

from support import REPO, free_port
from cluster import Process, default_binary


class Broker(Process):
    """One single-node `spate serve` (its own one-voter controller); restartable on the same
    data directory and port."""

    def __init__(self, binary: Path, data_dir: Path, log_path: Path, config=None):
        super().__init__(binary, log_path)
        self.data_dir = data_dir
        self.config = config
        self.port = free_port()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        return f"broker {self.bootstrap} ({f'pid {self.pid}' if self.running else 'down'})"

    def command(self) -> list:
        cmd = [str(self.binary), "serve", "--data-dir", str(self.data_dir), "--listen",
               self.bootstrap]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd

    def listen_port(self) -> int:
        return self.port


@pytest.fixture(scope="session")
def spate_bin() -> Path:
    path = default_binary()
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

