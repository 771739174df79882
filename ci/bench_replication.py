#!/usr/bin/env python3
"""Replication throughput: acks=all produce to a replicated cluster against acks=1 produce to a
single node, with spate-bench (issue 8 asks for at least 50%). Standard library only.

    cargo build --release -p spate -p spate-bench
    ci/bench_replication.py                      # 3 rounds of 20 s each side
    ci/bench_replication.py --rounds 5 --duration 30s --record-size 100

Side A: one standalone node (ci/cluster.py), topic with replication factor 1, acks=1.
Side B: a cluster (3 controller-only + 3 broker-only nodes by default), topic with
replication factor 3, min.insync.replicas=2, acks=all.
Both: the same base profile and keys (--profile, --set), 6 partitions, one producer,
256 KiB batches, max rate, a fresh topic per round. Each side runs its rounds on its own
(the other side stopped); the medians and B/A are printed, and with --json written out.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cluster import REPO, Cluster, parse_setting

# Kafka's failure-detection defaults: a loaded 2-core machine must not fence a busy broker
# in the middle of a measurement (ci/cluster.py's test settings are seconds).
CLUSTER_SETTINGS = {
    "broker.session.timeout.ms": 9000,
    "broker.heartbeat.interval.ms": 2000,
    "replica.lag.time.max.ms": 30000,
    "min.insync.replicas": 2,
}
# Keep the disk from filling (hundreds of MB/s, three copies on one disk): small segments,
# 32 MiB kept per partition, checked every second.
DISK_SETTINGS = {
    "log.segment.bytes": 8388608,
    "log.retention.bytes": 33554432,
    "log.retention.check.interval.ms": 1000,
}


def release_binary(name: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / name


WORKLOAD = """\
name: replication-{label}
mode: produce
topics:
  - name: {topic}
    partitions: {partitions}
    replication_factor: {rf}
record:
  size: {record_size}
producers:
  count: 1
  acks: {acks}
  batch_size: 256KiB
  linger: 5ms
  max_in_flight: 5
  rate: max
duration: {duration}
warmup: {warmup}
"""


def run_round(args, work: Path, label: str, round_: int, bootstrap: str, rf: int, acks) -> dict:
    workload = work / f"{label}-{round_}.yaml"
    report = work / f"{label}-{round_}.json"
    workload.write_text(
        WORKLOAD.format(
            label=label,
            topic=f"bench-replication-{label}-{round_}",
            partitions=args.partitions,
            rf=rf,
            record_size=args.record_size,
            acks=acks,
            duration=args.duration,
            warmup=args.warmup,
        )
    )
    cmd = [str(args.bench), "run", str(workload), "--broker", bootstrap.split(",")[0],
           "--json", str(report), "--quiet"]
    disk_before, started = written_to_disk(work), time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    disk_rate = (written_to_disk(work) - disk_before) / (time.monotonic() - started) / 1e6
    # Exit 1: the run finished but some records failed (reported below); 2: no run.
    if done.returncode not in (0, 1) or not report.exists():
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    result = json.loads(report.read_text())
    produce = result["produce"]
    failed = ""
    if result["failed_msgs"]:
        failed = f", {result['failed_msgs']} records failed: {result['errors']}"
    print(f"  {label} round {round_ + 1}: {produce['msgs_per_sec']:,.0f} msg/s, "
          f"{produce['mb_per_sec']:.1f} MB/s; disk written {disk_rate:.0f} MB/s{failed}",
          flush=True)
    return {**produce, "disk_written_mb_per_sec": disk_rate}


def written_to_disk(path: Path) -> int:
    """Bytes the block device holding `path` has written so far (/proc/diskstats): with
    --json, the disk's write rate over each round (warm-up included) shows when the disk,
    not the broker, is the bound."""
    dev = os.stat(path).st_dev
    major, minor = os.major(dev), os.minor(dev)
    with open("/proc/diskstats") as stats:
        for line in stats:
            fields = line.split()
            if int(fields[0]) == major and int(fields[1]) == minor:
                return int(fields[9]) * 512  # sectors written, always 512-byte units
    return 0  # not a block device (tmpfs): nothing to report


def measure(args, work: Path, label: str, cluster_kwargs: dict, rf: int, acks) -> list:
    cluster = Cluster(work / label, profile=args.profile, binary=args.binary, **cluster_kwargs)
    cluster.start()
    try:
        return [
            run_round(args, work, label, r, cluster.bootstrap, rf, acks)
            for r in range(args.rounds)
        ]
    finally:
        cluster.stop()
        if not args.keep:
            for node in cluster.nodes:
                shutil.rmtree(node.data_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--binary", type=Path, default=release_binary("spate"))
    parser.add_argument("--bench", type=Path, default=release_binary("spate-bench"))
    parser.add_argument("--profile", type=Path, default=REPO / "tuning" / "default.yaml")
    parser.add_argument("--set", type=parse_setting, action="append", default=[],
                        metavar="KEY=VALUE", help="a profile key for every node (repeatable)")
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="20s")
    parser.add_argument("--warmup", default="5s")
    parser.add_argument("--record-size", default="1KiB")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the nodes' data (logs are kept if a run fails)"
    )
    args = parser.parse_args()
    for path in (args.binary, args.bench):
        if not path.is_file():
            sys.exit(f"no {path}: cargo build --release -p spate -p spate-bench")

    work = Path(tempfile.mkdtemp(prefix="spate-bench-replication-"))
    extra = {**DISK_SETTINGS, **dict(args.set)}
    print(f"single node, replication factor 1, acks=1 ({work})", flush=True)
    single = measure(args, work, "single", dict(brokers=1, controllers=0, settings=extra), 1, 1)
    print(f"{args.brokers} brokers + {args.controllers} controllers, replication factor 3, "
          f"min.insync.replicas=2, acks=all", flush=True)
    replicated = measure(
        args,
        work,
        "replicated",
        dict(brokers=args.brokers, controllers=args.controllers,
             settings={**CLUSTER_SETTINGS, **extra}),
        3,
        "all",
    )

    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    figures = {
        "single_acks1_mb_per_sec": median(single, "mb_per_sec"),
        "single_acks1_msgs_per_sec": median(single, "msgs_per_sec"),
        "rf3_acksall_mb_per_sec": median(replicated, "mb_per_sec"),
        "rf3_acksall_msgs_per_sec": median(replicated, "msgs_per_sec"),
        "single_disk_written_mb_per_sec": median(single, "disk_written_mb_per_sec"),
        "rf3_disk_written_mb_per_sec": median(replicated, "disk_written_mb_per_sec"),
        "rounds": args.rounds,
        "duration": args.duration,
        "record_size": args.record_size,
    }
    figures["ratio"] = figures["rf3_acksall_mb_per_sec"] / figures["single_acks1_mb_per_sec"]
    print(f"\nmedian of {args.rounds}: single node acks=1 {figures['single_acks1_mb_per_sec']:.1f} "
          f"MB/s, RF=3 acks=all {figures['rf3_acksall_mb_per_sec']:.1f} MB/s, "
          f"ratio {figures['ratio']:.2f} (issue 8 asks >= 0.50); disk written "
          f"{figures['single_disk_written_mb_per_sec']:.0f} and "
          f"{figures['rf3_disk_written_mb_per_sec']:.0f} MB/s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.keep:
        print(f"data and logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
