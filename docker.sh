#!/usr/bin/env bash
# Trove in containers: builds the image without pulling anything, and runs a
# cluster of containers on a private Docker network — a master, N volumes
# (each with its own named data volume and address), and an S3 gateway when
# the image has one. See the README's "Docker" section.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./docker.sh COMMAND [ARGS]

  build                      build the image trove:<version> (and trove:latest) from the
                             release binaries and the shared libraries they load
  up [--volumes N] [--replicas R]
                             start the cluster (default 3 volumes, 2 replicas) or whatever
                             part of it is missing, and wait until the master is ready
  down [--purge]             stop and remove the containers and the network; --purge also
                             deletes every named volume: the index and all the data
  status                     the containers, and the master's /-/status
  logs [NAME] [ARGS]         logs of NAME (master, vol2, s3, or a container name), or of
                             all; ARGS go to `docker logs` (e.g. -f, --tail 20)
  rebalance|verify|gc [ARGS] run the admin job against the master, in a container on the
                             cluster's network; ARGS are the job's flags (--dry-run, --deep,
                             --repair, --grace 0s, --concurrency N)
  rebuild [--discard-index]  recreate a lost index from the volumes, then start the master;
                             --discard-index first deletes the index the master had
  add-volume [ARGS]          start one more volume, restart the master with it, and run
                             `rebalance ARGS`: the way to grow the cluster
  resolve                    curl options that let this host follow redirects to the
                             volume containers: curl -L $(./docker.sh resolve) URL

Settings (environment):
  TROVE_DOCKER_PROJECT   prefix of every container, network and volume (default: trove)
  TROVE_DOCKER_IMAGE     image to run (default: trove:<workspace version>)
  TROVE_DOCKER_PUBLISH   host address the ports are published on (default: 127.0.0.1)
  TROVE_DOCKER_PORT      host port of the master (default 3000; 0: Docker picks one)
  TROVE_DOCKER_S3_PORT   host port of the S3 gateway (default 9000; 0: Docker picks one)
  TROVE_DOCKER_RESTART   restart policy of the servers (default: unless-stopped)
  TROVE_BIN_DIR          build: take the binaries from here instead of running cargo
  TROVE_SECRET, TROVE_STALL_TIMEOUT, TROVE_CONNECT_TIMEOUT, TROVE_HEALTH_INTERVAL,
  TROVE_MIN_FREE, TROVE_URL_TTL, TROVE_NO_FSYNC, TROVE_PROTECT, TROVE_HEADER_TIMEOUT,
  TROVE_IDLE_TIMEOUT, TROVE_MAX_CONNECTIONS, RUST_LOG
                         passed to the servers; later commands keep what the running
                         containers were started with
  TROVE_S3_ACCESS_KEY, TROVE_S3_SECRET_KEY
                         the gateway's credentials (random ones are made and printed
                         when unset)
EOF
}

root="$(cd "$(dirname "$0")" && pwd)"
project="${TROVE_DOCKER_PROJECT:-trove}"
publish="${TROVE_DOCKER_PUBLISH:-127.0.0.1}"
restart_policy="${TROVE_DOCKER_RESTART:-unless-stopped}"
net="$project-net"
master="$project-master"
# Ports inside the containers; every container has its own address, so
# all volumes use the same one.
master_port=3000
volume_port=3001
s3_port=9000
# The settings the servers read from their environment, passed through.
passthrough=(TROVE_SECRET TROVE_STALL_TIMEOUT TROVE_CONNECT_TIMEOUT TROVE_HEALTH_INTERVAL
    TROVE_MIN_FREE TROVE_URL_TTL TROVE_NO_FSYNC TROVE_PROTECT TROVE_HEADER_TIMEOUT
    TROVE_IDLE_TIMEOUT TROVE_MAX_CONNECTIONS RUST_LOG)

die() {
    echo "docker.sh: $*" >&2
    exit 1
}

# The workspace version, from Cargo.toml's [workspace.package].
workspace_version() {
    sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml"
}

version="$(workspace_version)"
[ -n "$version" ] || die "cannot read the version from $root/Cargo.toml"
image="${TROVE_DOCKER_IMAGE:-trove:$version}"

need_docker() {
    command -v docker >/dev/null 2>&1 || die "docker not found: install Docker Engine"
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info): is it running, may this user use it?"
}

need_image() {
    docker image inspect "$image" >/dev/null 2>&1 || die "no image $image: run ./docker.sh build first"
}

exists() { # container, volume or network NAME
    docker "$1" inspect "$2" >/dev/null 2>&1
}

running() {
    [ "$(docker container inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

label_of() { # container|volume NAME LABEL
    local labels=.Labels
    if [ "$1" = container ]; then labels=.Config.Labels; fi
    # (Some docker versions print a blank line first.)
    docker "$1" inspect -f "{{index $labels \"$3\"}}" "$2" 2>/dev/null | tr -d '[:space:]' || true
}

# How many volumes the cluster has: the highest N of any <project>-volN
# container or <project>-volN-data volume, or of the master's list (a volume
# whose container and disk were just removed still counts).
volume_count() {
    local n=0 name i
    for name in $(docker ps -a --filter "label=trove.project=$project" --format '{{.Names}}') \
        $(docker volume ls -q --filter "label=trove.project=$project"); do
        if [[ "$name" =~ ^$project-vol([0-9]+)(-data)?$ ]]; then
            i="${BASH_REMATCH[1]}"
            if [ "$i" -gt "$n" ]; then n="$i"; fi
        fi
    done
    i="$(label_of container "$master" trove.volumes)"
    if [ -n "$i" ] && [ "$i" -gt "$n" ]; then n="$i"; fi
    echo "$n"
}

volume_list() { # N: the master's --volumes
    local list="" i
    for i in $(seq 1 "$1"); do list+="${list:+,}$project-vol$i:$volume_port"; done
    echo "$list"
}

# Settings not given in this environment are taken from the cluster's
# running containers, so that a later command (add-volume, rebuild)
# recreates the master as it was.
inherit_settings() {
    local from="" c var line
    for c in "$master" "$project-vol1"; do
        if exists container "$c"; then from="$c" && break; fi
    done
    [ -n "$from" ] || return 0
    while IFS= read -r line; do
        var="${line%%=*}"
        for known in "${passthrough[@]}"; do
            if [ "$var" = "$known" ] && [ -z "${!var+set}" ]; then
                export "$var=${line#*=}"
            fi
        done
    done < <(docker container inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$from")
}

env_flags=()
collect_env_flags() {
    local var
    env_flags=()
    for var in "${passthrough[@]}"; do
        if [ -n "${!var+set}" ]; then env_flags+=(-e "$var"); fi
    done
}

# Every named volume records the replica count and whether the cluster
# signs its URLs, so that `up` after `down`, and `rebuild` after the index
# is lost, start the cluster as it was created.
create_volume() { # NAME ROLE REPLICAS
    exists volume "$1" && return 0
    docker volume create --label "trove.project=$project" --label "trove.role=$2" \
        --label "trove.replicas=$3" --label "trove.signed=$([ -n "${TROVE_SECRET:-}" ] && echo 1 || echo 0)" \
        "$1" >/dev/null
}

# The replica count recorded on the cluster's volumes, if any.
recorded_replicas() {
    local v r
    for v in "$project-index" "$project-vol1-data"; do
        r="$(label_of volume "$v" trove.replicas)"
        if [ -n "$r" ]; then echo "$r" && return 0; fi
    done
}

check_secret() {
    local v
    for v in "$project-index" "$project-vol1-data"; do
        if [ "$(label_of volume "$v" trove.signed)" = 1 ] && [ -z "${TROVE_SECRET:-}" ]; then
            die "this cluster was created with a secret: export TROVE_SECRET first"
        fi
    done
}

ensure_network() {
    exists network "$net" || docker network create --label "trove.project=$project" "$net" >/dev/null
}

# Waits until `trove-master probe URL` succeeds inside CONTAINER.
wait_for() { # CONTAINER URL
    local i restarts
    restarts="$(docker container inspect -f '{{.RestartCount}}' "$1")"
    for i in $(seq 1 120); do
        if ! running "$1" || [ "$(docker container inspect -f '{{.RestartCount}}' "$1")" != "$restarts" ]; then
            docker logs --tail 20 "$1" >&2 || true
            die "$1 stopped while starting (its last log lines are above)"
        fi
        if docker exec "$1" trove-master probe --timeout 2s "$2" >/dev/null 2>&1; then return 0; fi
        [ "$i" -lt 120 ] && sleep 0.5
    done
    docker logs --tail 20 "$1" >&2 || true
    die "$1: $2 did not answer within 60 s (its last log lines are above)"
}

# Brings up one server: a running container is left alone, a stopped one
# started again, a missing one created with ARGS (what follows the common
# flags of `docker run`); then waits until PROBE-URL answers inside it
# (the URL its health check probes too).
ensure_server() { # NAME ROLE PROBE-URL ARGS...
    local name="$1" role="$2" url="$3"
    shift 3
    if running "$name"; then
        :
    elif exists container "$name"; then
        docker start "$name" >/dev/null
    else
        docker run --detach --name "$name" --hostname "$name" --network "$net" \
            --restart "$restart_policy" --label "trove.project=$project" --label "trove.role=$role" \
            -e "TROVE_PROBE_URL=$url" "${env_flags[@]}" "$@" >/dev/null
    fi
    wait_for "$name" "$url"
}

start_volume() { # I REPLICAS
    local name="$project-vol$1"
    create_volume "$name-data" data "$2"
    ensure_server "$name" volume "http://127.0.0.1:$volume_port/-/healthy" \
        --label "trove.volume=$1" -v "$name-data:/data" "$image" trove-volume --port "$volume_port" /data
}

# The host port the master is published on now, or the configured one.
master_host_port() {
    local p
    p="$(docker port "$master" "$master_port/tcp" 2>/dev/null | head -n 1)"
    if [ -n "$p" ]; then echo "${p##*:}"; else echo "${TROVE_DOCKER_PORT:-3000}"; fi
}

start_master() { # VOLUMES REPLICAS
    local port="${TROVE_DOCKER_PORT:-3000}"
    if exists container "$master" && [ "$(label_of container "$master" trove.volumes)" != "$1" ]; then
        # The volume list changed (add-volume): the master must restart with
        # the new --volumes, on the same host port and the same index.
        port="$(master_host_port)"
        docker stop -t 30 "$master" >/dev/null
        docker rm "$master" >/dev/null
    fi
    create_volume "$project-index" index "$2"
    ensure_server "$master" master "http://127.0.0.1:$master_port/-/ready" \
        --label "trove.volumes=$1" -v "$project-index:/data" -p "$publish:$port:$master_port" \
        "$image" trove-master serve --port "$master_port" --db /data/index \
        --volumes "$(volume_list "$1")" --replicas "$2"
}

image_has() { # BINARY
    case " $(docker image inspect -f '{{index .Config.Labels "trove.binaries"}}' "$image") " in
        *" $1 "*) return 0 ;;
        *) return 1 ;;
    esac
}

random_token() {
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

start_gateway() {
    image_has trove-s3 || return 0
    # Used only when the container is created; it keeps them.
    export TROVE_S3_ACCESS_KEY="${TROVE_S3_ACCESS_KEY:-trove-$(random_token | cut -c1-12)}"
    export TROVE_S3_SECRET_KEY="${TROVE_S3_SECRET_KEY:-$(random_token)}"
    # /-/healthy is the one path that needs no signature.
    ensure_server "$project-s3" s3 "http://127.0.0.1:$s3_port/-/healthy" \
        -p "$publish:${TROVE_DOCKER_S3_PORT:-9000}:$s3_port" \
        -e TROVE_S3_ACCESS_KEY -e TROVE_S3_SECRET_KEY \
        "$image" trove-s3 --bind 0.0.0.0 --port "$s3_port" --master "http://$master:$master_port"
}

cmd_up() {
    local volumes="" replicas="" have recorded i
    while [ $# -gt 0 ]; do
        case "$1" in
            --volumes) volumes="${2:?--volumes needs a number}" && shift 2 ;;
            --replicas) replicas="${2:?--replicas needs a number}" && shift 2 ;;
            *) die "up: unknown argument $1 (see ./docker.sh help)" ;;
        esac
    done
    need_docker
    need_image
    inherit_settings
    check_secret
    have="$(volume_count)"
    if [ "$have" -gt 0 ] && ! exists volume "$project-index"; then
        # A fresh index over volumes full of blobs would make them all
        # orphans (and gc would delete them).
        die "the volumes of $project hold data but its index volume $project-index is gone: ./docker.sh rebuild recovers the index from them (./docker.sh down --purge deletes everything instead)"
    fi
    volumes="${volumes:-$((have > 3 ? have : 3))}"
    [[ "$volumes" =~ ^[1-9][0-9]*$ ]] || die "--volumes must be a positive number"
    if [ "$volumes" -lt "$have" ]; then
        die "this cluster has $have volumes; removing one is not done by resizing (README: Operating, On several hosts)"
    fi
    recorded="$(recorded_replicas)"
    if [ -n "$recorded" ] && [ -n "$replicas" ] && [ "$replicas" != "$recorded" ]; then
        die "this cluster was created with --replicas $recorded; docker.sh does not change it"
    fi
    replicas="${replicas:-${recorded:-$((volumes < 2 ? volumes : 2))}}"
    if ! [[ "$replicas" =~ ^[1-9][0-9]*$ ]] || [ "$replicas" -gt "$volumes" ]; then
        die "--replicas must be between 1 and the number of volumes ($volumes)"
    fi
    collect_env_flags
    ensure_network
    for i in $(seq 1 "$volumes"); do start_volume "$i" "$replicas"; done
    start_master "$volumes" "$replicas"
    start_gateway
    print_usage "$volumes" "$replicas"
}

print_usage() { # VOLUMES REPLICAS
    local url
    url="http://$publish:$(master_host_port)"
    cat <<EOF
Trove is running: master $url ($master), $1 volumes ($project-vol1…$1, each with its named
volume $project-volN-data), $2 replicas, network $net.

  echo hello > /tmp/hello.txt
  curl -T /tmp/hello.txt $url/greetings/hello.txt       # write (201)
  curl -I $url/greetings/hello.txt                      # the 302, its size and digests
  curl -L \$(./docker.sh resolve) $url/greetings/hello.txt   # read (the redirect names a volume container)
  curl "$url/greetings/?list"
  curl -X DELETE $url/greetings/hello.txt
  ./docker.sh status | logs master | verify | gc | add-volume | down
EOF
    if running "$project-s3"; then
        echo "S3 gateway: http://$publish:$(docker port "$project-s3" "$s3_port/tcp" | head -n 1 | sed 's/.*://')," \
            "$(docker container inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$project-s3" |
                sed -n 's/^TROVE_S3_ACCESS_KEY=/access key /p; s/^TROVE_S3_SECRET_KEY=/secret key /p' | paste -sd ' ')"
    fi
}

cmd_down() {
    local purge=0 ids
    case "${1:-}" in
        "") ;;
        --purge) purge=1 ;;
        *) die "down: unknown argument $1" ;;
    esac
    need_docker
    ids="$(docker ps -q --filter "label=trove.project=$project" --filter status=paused)"
    # shellcheck disable=SC2086 # one id per word
    if [ -n "$ids" ]; then docker unpause $ids >/dev/null; fi
    ids="$(docker ps -aq --filter "label=trove.project=$project")"
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        docker stop -t 30 $ids >/dev/null
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null
    fi
    if exists network "$net"; then docker network rm "$net" >/dev/null; fi
    if [ "$purge" = 1 ]; then
        ids="$(docker volume ls -q --filter "label=trove.project=$project")"
        # shellcheck disable=SC2086
        if [ -n "$ids" ]; then docker volume rm $ids >/dev/null; fi
        echo "removed the cluster $project and all its data"
    else
        echo "stopped the cluster $project; its data stays in the volumes below (./docker.sh down --purge deletes them)"
        docker volume ls --filter "label=trove.project=$project"
    fi
}

cmd_status() {
    need_docker
    docker ps -a --filter "label=trove.project=$project" --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
    if running "$master"; then
        echo
        docker exec "$master" trove-master probe --print "http://127.0.0.1:$master_port/-/status"
        echo
    fi
}

cmd_logs() {
    local name="${1:-}" c
    need_docker
    if [ -n "$name" ]; then
        shift
        exists container "$name" || name="$project-$name"
        docker logs "$@" "$name"
        return
    fi
    for c in $(docker ps -a --filter "label=trove.project=$project" --format '{{.Names}}' | sort); do
        echo "==> $c <=="
        docker logs --tail 20 "$c" 2>&1
    done
}

# Runs `trove-master ARGS` in a one-off container on the cluster's network.
admin() {
    local tty=()
    need_image
    inherit_settings
    collect_env_flags
    if [ -t 0 ] && [ -t 1 ]; then tty=(-it); fi
    exists network "$net" || die "no cluster $project is running (./docker.sh up)"
    docker run --rm "${tty[@]}" --no-healthcheck --network "$net" --label "trove.project=$project" --label trove.role=admin \
        "${env_flags[@]}" "$image" trove-master "$@"
}

cmd_job() { # JOB ARGS
    need_docker
    running "$master" || die "the master $master is not running (./docker.sh up)"
    admin "$@" --master "http://$master:$master_port"
}

cmd_rebuild() {
    local discard=0 n replicas i
    case "${1:-}" in
        "") ;;
        --discard-index) discard=1 ;;
        *) die "rebuild: unknown argument $1" ;;
    esac
    need_docker
    need_image
    inherit_settings
    n="$(volume_count)"
    [ "$n" -gt 0 ] || die "no volumes of $project to rebuild from"
    for i in $(seq 1 "$n"); do
        running "$project-vol$i" || die "$project-vol$i is not running: every volume must answer (./docker.sh up starts them)"
    done
    replicas="$(recorded_replicas)"
    [ -n "$replicas" ] || die "cannot tell the replica count: no volume of $project records it"
    if exists volume "$project-index" && [ "$discard" = 0 ]; then
        die "the index volume $project-index exists: rebuild replaces a lost index; to throw this one away and rebuild it from the volumes, add --discard-index"
    fi
    if exists container "$master"; then
        docker stop -t 30 "$master" >/dev/null
        docker rm "$master" >/dev/null
    fi
    if [ "$discard" = 1 ] && exists volume "$project-index"; then
        docker volume rm "$project-index" >/dev/null
    fi
    create_volume "$project-index" index "$replicas"
    collect_env_flags
    docker run --rm --no-healthcheck --network "$net" --label "trove.project=$project" --label trove.role=admin \
        -v "$project-index:/data" "${env_flags[@]}" "$image" \
        trove-master rebuild --db /data/index --volumes "$(volume_list "$n")" ||
        die "rebuild failed (above); the master is stopped until it succeeds"
    start_master "$n" "$replicas"
    echo "the master serves the rebuilt index"
}

cmd_add_volume() {
    local n
    need_docker
    running "$master" || die "the master $master is not running (./docker.sh up)"
    n="$(volume_count)"
    cmd_up --volumes "$((n + 1))" >/dev/null
    echo "started $project-vol$((n + 1)); the master now uses $((n + 1)) volumes; rebalancing"
    cmd_job rebalance "$@"
}

cmd_resolve() {
    local c ip out=()
    need_docker
    for c in $(docker ps --filter "label=trove.project=$project" --filter label=trove.role=volume --format '{{.Names}}'); do
        ip="$(docker container inspect -f "{{with index .NetworkSettings.Networks \"$net\"}}{{.IPAddress}}{{end}}" "$c")"
        if [ -n "$ip" ]; then out+=(--resolve "$c:$volume_port:$ip"); fi
    done
    echo "${out[*]}"
}

# --- build -------------------------------------------------------------------

cmd_build() {
    local bin ctx b lib bins=() libs=()
    need_docker
    if [ -n "${TROVE_BIN_DIR:-}" ]; then
        bin="$TROVE_BIN_DIR"
    else
        command -v cargo >/dev/null 2>&1 || die "building the image needs the Rust toolchain (cargo) on this machine:
the binaries are compiled here and copied into an image made from nothing, because this engine
cannot pull a build image. Install Rust (https://rustup.rs) and run again, or set TROVE_BIN_DIR to a
folder of release binaries built on a Linux of the same C library."
        "$root/scripts/deps.sh"
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/trove-target}"
        (cd "$root" && cargo build --release --bins)
        bin="$CARGO_TARGET_DIR/release"
    fi
    for b in trove-master trove-volume trove trove-s3; do
        if [ -x "$bin/$b" ]; then bins+=("$b"); fi
    done
    [[ " ${bins[*]} " == *" trove-master trove-volume "* ]] || die "no trove-master and trove-volume in $bin"

    ctx="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: the variable is local
    trap "rm -rf '$ctx'" EXIT
    mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/data"
    chmod 1777 "$ctx/rootfs/tmp"
    for b in "${bins[@]}"; do
        # Line tables make backtraces precise but weigh more than the code.
        if command -v objcopy >/dev/null 2>&1; then
            objcopy --strip-debug "$bin/$b" "$ctx/rootfs/usr/local/bin/$b"
        else
            cp "$bin/$b" "$ctx/rootfs/usr/local/bin/$b"
        fi
        if ldd "$bin/$b" | grep -q 'not found'; then
            die "$bin/$b needs libraries this machine lacks: $(ldd "$bin/$b" | grep 'not found')"
        fi
        # `lib => /path (addr)` lines, and the loader's own `/path (addr)`.
        while read -r lib; do libs+=("$lib"); done < <(ldd "$bin/$b" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
    done
    for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done
    printf 'root:x:0:0:root:/:/nonexistent\ntrove:x:10001:10001:Trove:/data:/nonexistent\n' >"$ctx/rootfs/etc/passwd"
    printf 'root:x:0:\ntrove:x:10001:\n' >"$ctx/rootfs/etc/group"
    # Container names resolve through Docker's DNS (glibc has files and
    # dns built in; this says in which order).
    printf 'hosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"
    cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
# A fresh named volume mounted here takes this owner: the servers run as
# trove (10001), not root.
COPY --chown=10001:10001 data/ /data/
USER 10001:10001
ENV PATH=/usr/local/bin
WORKDIR /data
EXPOSE 3000 3001 9000
LABEL org.opencontainers.image.title="Trove" org.opencontainers.image.version="$version" trove.binaries="${bins[*]}"
# Each container says what to probe in TROVE_PROBE_URL (docker.sh and
# docker-compose.yml set it): the master's /-/ready, a volume's /-/healthy.
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=3 CMD ["/usr/local/bin/trove-master", "probe"]
CMD ["trove-master", "--help"]
EOF
    docker build --quiet -t "$image" -t "${image%:*}:latest" "$ctx" >/dev/null
    echo "built $image (and ${image%:*}:latest): ${bins[*]}, $(printf '%s\n' "${libs[@]}" | sort -u | wc -l) shared libraries, $(($(docker image inspect -f '{{.Size}}' "$image") / 1000000)) MB"
}

# --- main --------------------------------------------------------------------

command="${1:-help}"
[ $# -gt 0 ] && shift
case "$command" in
    build) cmd_build "$@" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    logs) cmd_logs "$@" ;;
    rebalance | verify | gc) cmd_job "$command" "$@" ;;
    rebuild) cmd_rebuild "$@" ;;
    add-volume) cmd_add_volume "$@" ;;
    resolve) cmd_resolve "$@" ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
esac
