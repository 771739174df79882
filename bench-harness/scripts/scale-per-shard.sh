#!/bin/bash
# Scaling with a CPU budget per shard: each shard thread of the broker gets a cgroup v1 `cpu`
# group of its own allowed SHARE of a CPU, as if it owned a core that much slower; the load
# generator runs outside them. On a machine with few cores this is how "2 shards against 1,
# with clients that are not the bottleneck" is measured (docs/benchmarks.md, finding 12).
#
# usage (root, cgroup v1 cpu controller at /sys/fs/cgroup/cpu):
#   bench-harness/scripts/scale-per-shard.sh SPATE SPATE_BENCH ROUNDS SHARE SHARDS:WORKLOAD...
# e.g. ... target/release/spate target/release/spate-bench 3 0.4 \
#          1:bench-harness/workloads/small-records.yaml 2:my-4-producers.yaml
# Each round runs every SHARDS:WORKLOAD pair in turn, each on a fresh broker and data dir,
# and prints: shards, workload, msg/s, broker CPU-s per million messages, broker CPU-s.
set -eu
SPATE=$1; BENCH=$2; ROUNDS=$3; SHARE=$4; shift 4
CPU=/sys/fs/cgroup/cpu
PORT=39790
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
for pair in "$@"; do
  for ((s = 0; s < ${pair%%:*}; s++)); do
    mkdir -p "$CPU/spate-shard-$s"
    echo 10000 > "$CPU/spate-shard-$s/cpu.cfs_period_us"
    awk -v share="$SHARE" 'BEGIN { printf "%d\n", share * 10000 }' > "$CPU/spate-shard-$s/cpu.cfs_quota_us"
  done
done
for ((r = 0; r < ROUNDS; r++)); do
  for pair in "$@"; do
    shards=${pair%%:*}; workload=${pair#*:}
    rm -rf "$DATA/log"
    "$SPATE" serve --data-dir "$DATA/log" --listen 127.0.0.1:$PORT --shards "$shards" 2> "$DATA/broker.log" &
    broker=$!
    sleep 1.5
    # glommio names a shard's executor thread (and its helper thread) spate-shard-N-M.
    for task in /proc/$broker/task/*; do
      name=$(cat "$task/comm")
      case $name in
        spate-shard-*) n=${name#spate-shard-}; echo "${task##*/}" > "$CPU/spate-shard-${n%%-*}/tasks" ;;
      esac
    done
    "$BENCH" run "$workload" --broker 127.0.0.1:$PORT --broker-pid $broker --quiet \
      --json "$DATA/run.json" --duration 6s --warmup 1s > /dev/null
    kill $broker; wait $broker || true
    python3 - "$shards" "$workload" "$DATA/run.json" <<'PY'
import json, sys
shards, workload, path = sys.argv[1:]
d = json.load(open(path))
print(shards, workload, round(d["produce"]["msgs_per_sec"]),
      round(d["broker_cpu_seconds_per_million_msgs"], 3), round(d["broker_cpu_seconds"], 2))
PY
  done
done
