#!/usr/bin/env bash
# Builds Trove and runs a local cluster in the foreground: a master on
# 127.0.0.1:3000 and three volumes on 127.0.0.1:3001-3003, all data under
# ./cluster-data (or $TROVE_DATA). Ctrl-C stops everything; the data stays.
#
#   TROVE_REPLICAS=2 scripts/cluster.sh         # fewer replicas
#   TROVE_CLUSTER_VOLUMES=4 scripts/cluster.sh  # volumes 3001-3004
#   TROVE_DATA=/srv/trove scripts/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trove-target}"
cargo build --release --bins
bin="$CARGO_TARGET_DIR/release"
data="${TROVE_DATA:-$PWD/cluster-data}"
replicas="${TROVE_REPLICAS:-3}"
count="${TROVE_CLUSTER_VOLUMES:-3}"
mkdir -p "$data"

pids=()
stop() {
    trap - EXIT INT TERM
    echo "stopping the cluster"
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT INT TERM

volumes=()
for i in $(seq 1 "$count"); do
    port=$((3000 + i))
    "$bin/trove-volume" --bind 127.0.0.1 --port "$port" "$data/volume$i" >"$data/volume$i.log" 2>&1 &
    pids+=($!)
    volumes+=("127.0.0.1:$port")
done
"$bin/trove-master" serve --bind 127.0.0.1 --port 3000 --db "$data/index" \
    --volumes "$(IFS=,; echo "${volumes[*]}")" --replicas "$replicas" >"$data/master.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
    if curl -fs http://127.0.0.1:3000/-/ready >/dev/null 2>&1; then break; fi
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "a server exited during start-up; see the logs in $data" >&2
            tail -n 5 "$data"/*.log >&2
            exit 1
        fi
    done
    sleep 0.1
done
curl -fs http://127.0.0.1:3000/-/ready >/dev/null || { echo "cluster not ready; see $data/*.log" >&2; exit 1; }

cat <<MSG
Trove is running: master http://127.0.0.1:3000, volumes ${volumes[*]}, $replicas replicas.
Data and logs: $data

Try (the trove command line; see the README's "Client" section):
  export PATH="$bin:\$PATH"
  echo hello > /tmp/hello.txt
  trove put /tmp/hello.txt greetings/hello.txt      # write
  trove get greetings/hello.txt                     # read (sha256 checked)
  trove stat greetings/hello.txt                    # size, digests, replicas
  trove ls -l greetings/                            # list keys under a prefix
  trove rm greetings/hello.txt                      # delete
  trove status                                      # volumes, keys, jobs

or curl, as with minikeyvalue:
  curl -L -T /tmp/hello.txt http://127.0.0.1:3000/greetings/hello.txt   # write (201)
  curl -L http://127.0.0.1:3000/greetings/hello.txt                     # read
  curl -i http://127.0.0.1:3000/greetings/hello.txt                     # the 302 and its digests

Admin commands (see the README's "Operating" section):
  trove-master verify --deep && trove-master gc --dry-run

Ctrl-C stops the cluster.
MSG
wait
