#!/usr/bin/env bash
# Builds Trove and runs a local cluster in the foreground: a master on
# 127.0.0.1:3000, three volumes on 127.0.0.1:3001-3003 and an S3 gateway on
# 127.0.0.1:9000, all data under ./cluster-data (or $TROVE_DATA). Ctrl-C
# stops everything; the data stays.
#
#   TROVE_S3_ACCESS_KEY=... TROVE_S3_SECRET_KEY=... scripts/cluster.sh
#                                              # the gateway's credentials
#                                              # (default: trove / trove-secret)
#   TROVE_S3_PORT=9100 scripts/cluster.sh      # another port for the gateway
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

s3_port="${TROVE_S3_PORT:-9000}"
export TROVE_S3_ACCESS_KEY="${TROVE_S3_ACCESS_KEY:-trove}"
export TROVE_S3_SECRET_KEY="${TROVE_S3_SECRET_KEY:-trove-secret}"
"$bin/trove-s3" --bind 127.0.0.1 --port "$s3_port" --master http://127.0.0.1:3000 >"$data/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:$s3_port/-/healthy" >/dev/null 2>&1; then break; fi
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "the S3 gateway exited; see $data/s3.log" >&2; tail -n 5 "$data/s3.log" >&2; exit 1; }
    sleep 0.1
done
curl -fs "http://127.0.0.1:$s3_port/-/healthy" >/dev/null || { echo "S3 gateway not ready; see $data/s3.log" >&2; exit 1; }

cat <<MSG
Trove is running: master http://127.0.0.1:3000, volumes ${volumes[*]}, $replicas replicas,
S3 gateway http://127.0.0.1:$s3_port.
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

S3 (the gateway on http://127.0.0.1:$s3_port; see the README's "S3" section).
aws-cli — paste into your shell:
  export AWS_ACCESS_KEY_ID=$TROVE_S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$TROVE_S3_SECRET_KEY AWS_DEFAULT_REGION=us-east-1
  export AWS_ENDPOINT_URL=http://127.0.0.1:$s3_port
  aws s3 mb s3://photos && aws s3 cp /tmp/hello.txt s3://photos/ && aws s3 ls s3://photos/

rclone — paste into ~/.config/rclone/rclone.conf:
  [trove]
  type = s3
  provider = Other
  access_key_id = $TROVE_S3_ACCESS_KEY
  secret_access_key = $TROVE_S3_SECRET_KEY
  endpoint = http://127.0.0.1:$s3_port
  force_path_style = true
then: rclone lsd trove:   rclone copy ./dir trove:photos/dir

s3cmd — the same settings as flags (or in ~/.s3cfg):
  s3cmd --access_key=$TROVE_S3_ACCESS_KEY --secret_key=$TROVE_S3_SECRET_KEY \\
        --host=127.0.0.1:$s3_port --host-bucket=127.0.0.1:$s3_port --no-ssl --region=us-east-1 ls

Admin commands (see the README's "Operating" section):
  trove-master verify --deep && trove-master gc --dry-run

Ctrl-C stops the cluster.
MSG
wait
