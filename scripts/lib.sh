# shellcheck shell=bash
# Shared helpers for scripts/dev, scripts/test, bench/run and .ci/run.
# Source it (`. "$(dirname "$0")/lib.sh"`); it does not change shell options.
#
# Environment it honours (all optional):
#   CARGO_TARGET_DIR        cargo's target dir (default: $HOME/.cache/slipway/target)
#   SLIPWAY_TEST_TMP        scratch dir for test services (default: /tmp/slipway-test-<uid>)
#   SLIPWAY_TEST_PG_PORT    port of the private PostgreSQL (default: first free from 55432)
#   SLIPWAY_TEST_PG_BIN          dir with initdb/pg_ctl (default: newest /usr/lib/postgresql/*/bin)
#   SLIPWAY_TEST_KEEP_POSTGRES=1 leave the private PostgreSQL running on exit
#   SLIPWAY_TEST_NO_INSTALL=1    never install anything; fail if something is missing

# Absolute path of the repository (parent of scripts/). Deliberately not exported:
# the server refuses to start on unknown SLIPWAY_* variables (only SLIPWAY_TEST_*,
# SLIPWAY_CONFIG and SLIPWAY_ADMIN_PASSWORD are ignored), so every knob of these
# scripts is named SLIPWAY_TEST_*.
SLIPWAY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---------------------------------------------------------------- output

_SLIPWAY_T0=${_SLIPWAY_T0:-$SECONDS}

# log MSG...: a timestamped line on stderr.
log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# die MSG...: print and exit 1.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# section TITLE: a banner that is easy to find in CI logs.
section() {
    local elapsed=$((SECONDS - _SLIPWAY_T0))
    printf '\n==== %s  [+%dm%02ds] ====\n' "$*" $((elapsed / 60)) $((elapsed % 60)) >&2
}

# fmt_duration SECONDS -> "12m34s"
fmt_duration() {
    printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# ---------------------------------------------------------------- cleanup

# Commands run (newest first) when the sourcing script exits, however it exits.
_SLIPWAY_CLEANUPS=()

_slipway_run_cleanups() {
    local i
    for ((i = ${#_SLIPWAY_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${_SLIPWAY_CLEANUPS[i]}" || true
    done
    _SLIPWAY_CLEANUPS=()
}

# on_exit 'command string': register a cleanup command.
on_exit() {
    _SLIPWAY_CLEANUPS+=("$1")
    trap _slipway_run_cleanups EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------- privileges

is_root() {
    [[ $(id -u) -eq 0 ]]
}

# as_root CMD...: run as root (directly when root, else through sudo).
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root for: $* (install sudo or run as root)"
    fi
}

# ---------------------------------------------------------------- packages

_SLIPWAY_APT_UPDATED=${_SLIPWAY_APT_UPDATED:-0}

# apt_installed PKG: true when dpkg has PKG fully installed.
apt_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ensure_apt_packages PKG...: install the packages that are missing.
# Runs `apt-get update` at most once per shell, and only when something is missing.
ensure_apt_packages() {
    local missing=() p
    command -v dpkg-query >/dev/null 2>&1 || die "ensure_apt_packages needs a Debian-based system (dpkg)"
    for p in "$@"; do
        apt_installed "$p" || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ ${SLIPWAY_TEST_NO_INSTALL:-0} == 1 ]] && die "missing packages (SLIPWAY_TEST_NO_INSTALL=1): ${missing[*]}"
    log "installing apt packages: ${missing[*]}"
    if [[ $_SLIPWAY_APT_UPDATED != 1 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq update
        _SLIPWAY_APT_UPDATED=1
    fi
    # Debian's postgresql package may start its own cluster on 5432: harmless, ours
    # uses a private port.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    for p in "${missing[@]}"; do
        apt_installed "$p" || die "apt-get did not install $p"
    done
}

# Packages a build of the workspace needs (C compiler for bundled SQLite etc.).
SLIPWAY_BUILD_PACKAGES=(build-essential pkg-config ca-certificates)

# ensure_build_deps: C toolchain and the wasm target.
ensure_build_deps() {
    ensure_apt_packages "${SLIPWAY_BUILD_PACKAGES[@]}"
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup first"
    ensure_rust_wasm
}

# ensure_rust_wasm: the wasm32-unknown-unknown target for the dashboard.
ensure_rust_wasm() {
    if ! command -v rustup >/dev/null 2>&1; then
        # A toolchain without rustup may still ship the target (e.g. distro rust-std).
        local sysroot
        sysroot="$(rustc --print sysroot 2>/dev/null || true)"
        [[ -d $sysroot/lib/rustlib/wasm32-unknown-unknown ]] && return 0
        die "wasm32-unknown-unknown target missing and rustup not found"
    fi
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
        [[ ${SLIPWAY_TEST_NO_INSTALL:-0} == 1 ]] && die "wasm32-unknown-unknown target missing (SLIPWAY_TEST_NO_INSTALL=1)"
        log "adding rust target wasm32-unknown-unknown"
        rustup target add wasm32-unknown-unknown
    fi
}

# target_dir: export CARGO_TARGET_DIR (outside the clone so CI reuses builds).
target_dir() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/slipway/target}"
    mkdir -p "$CARGO_TARGET_DIR"
}

# ensure_wasm_opt: binaryen's wasm-opt (npm binaryen@132, locked in
# scripts/wasm-opt) for the release build of the dashboard. Never Debian's
# binaryen: its wasm-opt silently breaks the app.
ensure_wasm_opt() {
    local dir="$SLIPWAY_REPO/scripts/wasm-opt"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        ensure_apt_packages nodejs npm
    fi
    if [[ ! -x $dir/node_modules/.bin/wasm-opt || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        log "npm ci --prefix scripts/wasm-opt"
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    fi
}

# build_frontend [--release]: build the dashboard into static/pkg/ via xtask.
# xtask finds the repo through env!("CARGO_MANIFEST_DIR"), fixed at compile time: with
# a CARGO_TARGET_DIR shared by several checkouts, cargo may reuse an xtask binary built
# in another checkout, which then writes *that* checkout's static/pkg. Detect it and
# force a rebuild of xtask here.
build_frontend() {
    local marker wasm="$SLIPWAY_REPO/static/pkg/slipway_frontend_bg.wasm" rc=0
    if [[ " $* " == *" --release "* ]]; then
        ensure_wasm_opt
    fi
    marker="$(mktemp)"
    (cd "$SLIPWAY_REPO" && cargo run -q -p xtask -- build-frontend "$@") || rc=$?
    if ((rc == 0)) && [[ ! $wasm -nt $marker ]]; then
        log "xtask did not write $wasm (binary built in another checkout?): rebuilding xtask"
        touch "$SLIPWAY_REPO/xtask/src/main.rs"
        (cd "$SLIPWAY_REPO" && cargo run -q -p xtask -- build-frontend "$@") || rc=$?
        if ((rc == 0)) && [[ ! $wasm -nt $marker ]]; then
            log "xtask still did not write $wasm"
            rc=1
        fi
    fi
    rm -f "$marker"
    return "$rc"
}

# ---------------------------------------------------------------- network

# port_in_use PORT: true when something accepts TCP on 127.0.0.1:PORT.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port START: print the first port >= START that nobody listens on.
free_port() {
    local p=$1
    while port_in_use "$p"; do
        p=$((p + 1))
        ((p < $1 + 200)) || die "no free port near $1"
    done
    printf '%s\n' "$p"
}

# wait_http URL TIMEOUT_S [PID]: wait until URL answers 2xx (and PID, if given, lives).
wait_http() {
    local url=$1 timeout=$2 pid=${3:-} deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            log "process $pid exited while waiting for $url"
            return 1
        fi
        curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.2
    done
    log "timed out after ${timeout}s waiting for $url"
    return 1
}

# ---------------------------------------------------------------- PostgreSQL

# pg_bin_dir: print the directory holding initdb/pg_ctl/postgres.
pg_bin_dir() {
    if [[ -n ${SLIPWAY_TEST_PG_BIN:-} ]]; then
        printf '%s\n' "$SLIPWAY_TEST_PG_BIN"
        return 0
    fi
    local d
    d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)"
    [[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] || return 1
    printf '%s\n' "$d"
}

# ensure_postgres: install PostgreSQL server binaries when missing.
ensure_postgres() {
    if ! pg_bin_dir >/dev/null; then
        ensure_apt_packages postgresql-15
    fi
    pg_bin_dir >/dev/null || die "PostgreSQL binaries not found (set SLIPWAY_TEST_PG_BIN)"
    # initdb refuses to run as root: use the postgres system user (the package creates it).
    if is_root && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    fi
}

# _pg CMD...: run a PostgreSQL tool as the cluster owner.
_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# start_postgres: start (or reuse) a private throw-away cluster under $SLIPWAY_TEST_TMP/pg
# on 127.0.0.1 and export SLIPWAY_TEST_POSTGRES_URL. Stopped on exit unless it was already
# running or SLIPWAY_TEST_KEEP_POSTGRES=1. Idempotent within a shell and across runs.
start_postgres() {
    if [[ -n ${_SLIPWAY_PG_STARTED:-} ]]; then
        return 0
    fi
    ensure_postgres
    local bin tmp pgdir data sock port
    bin="$(pg_bin_dir)"
    tmp="${SLIPWAY_TEST_TMP:-${TMPDIR:-/tmp}/slipway-test-$(id -u)}"
    export SLIPWAY_TEST_TMP="$tmp"
    pgdir="$tmp/pg"
    data="$pgdir/data"
    sock="$pgdir/sock"
    mkdir -p "$sock"
    if is_root; then
        # the cluster owner must reach and own the directory
        chmod 0755 "$tmp"
        chown -R postgres: "$pgdir"
        runuser -u postgres -- test -w "$pgdir" ||
            die "user postgres cannot write $pgdir (choose SLIPWAY_TEST_TMP under /tmp)"
    fi

    # Already running from an earlier run (e.g. SLIPWAY_TEST_KEEP_POSTGRES=1)? Reuse it.
    if [[ -f $data/postmaster.pid ]] && _pg "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        port="$(sed -n 4p "$data/postmaster.pid")"
        log "reusing running PostgreSQL on 127.0.0.1:$port ($data)"
    else
        if [[ ! -f $data/PG_VERSION ]]; then
            log "initdb $data"
            rm -rf "$data"
            _pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
                --no-sync --no-instructions >"$pgdir/initdb.log" 2>&1 ||
                { cat "$pgdir/initdb.log" >&2; die "initdb failed"; }
            # test-only settings: fast, not durable
            cat >>"$data/postgresql.conf" <<'EOF'
# --- slipway test cluster ---
listen_addresses = '127.0.0.1'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
EOF
        fi
        port="${SLIPWAY_TEST_PG_PORT:-$(free_port 55432)}"
        port_in_use "$port" && die "port $port is already in use (SLIPWAY_TEST_PG_PORT)"
        _pg "$bin/pg_ctl" start -w -t 60 -D "$data" -l "$pgdir/postgres.log" \
            -o "-p $port -k $sock -h 127.0.0.1" >/dev/null ||
            { tail -n 30 "$pgdir/postgres.log" >&2; die "PostgreSQL did not start"; }
        log "PostgreSQL started on 127.0.0.1:$port ($data)"
        if [[ ${SLIPWAY_TEST_KEEP_POSTGRES:-0} != 1 ]]; then
            on_exit stop_postgres
        fi
    fi
    _SLIPWAY_PG_STARTED=1
    export SLIPWAY_TEST_PG_DATA="$data"
    export SLIPWAY_TEST_PG_PORT="$port"
    export SLIPWAY_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# stop_postgres: stop the private cluster started by start_postgres.
stop_postgres() {
    local bin data=${SLIPWAY_TEST_PG_DATA:-}
    [[ -n $data && -f $data/postmaster.pid ]] || return 0
    bin="$(pg_bin_dir)" || return 0
    _pg "$bin/pg_ctl" stop -D "$data" -m fast -w -t 30 >/dev/null 2>&1 || true
    unset _SLIPWAY_PG_STARTED
    log "PostgreSQL stopped"
}

# ---------------------------------------------------------------- Docker Engine

# ensure_docker: Debian's Docker Engine and busybox-static (for test images).
ensure_docker() {
    ensure_apt_packages docker.io busybox-static
}

# docker_ok SOCKET: true when a Docker Engine answers on SOCKET.
docker_ok() {
    DOCKER_HOST="unix://$1" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# start_docker: start (or reuse) a private dockerd on a unix socket and export
# SLIPWAY_TEST_DOCKER_HOST (and DOCKER_HOST for the docker CLI of these scripts).
# Reuses an engine that already answers on $SLIPWAY_TEST_DOCKER_HOST or on the
# private socket; stopped on exit when started here, unless SLIPWAY_TEST_KEEP_DOCKER=1.
# The data root lives under ~/.cache so test images survive between runs.
start_docker() {
    if [[ -n ${_SLIPWAY_DOCKER_STARTED:-} ]]; then
        return 0
    fi
    ensure_docker
    local tmp sock root
    tmp="${SLIPWAY_TEST_TMP:-${TMPDIR:-/tmp}/slipway-test-$(id -u)}"
    export SLIPWAY_TEST_TMP="$tmp"
    if [[ -n ${SLIPWAY_TEST_DOCKER_HOST:-} ]] && docker_ok "${SLIPWAY_TEST_DOCKER_HOST#unix://}"; then
        sock="${SLIPWAY_TEST_DOCKER_HOST#unix://}"
        log "reusing Docker Engine at $sock"
    else
        sock="$tmp/docker/docker.sock"
        root="${SLIPWAY_TEST_DOCKER_ROOT:-$HOME/.cache/slipway/docker}"
        mkdir -p "$tmp/docker" "$root"
        if docker_ok "$sock"; then
            log "reusing Docker Engine at $sock"
        else
            is_root || die "dockerd needs root (or set SLIPWAY_TEST_DOCKER_HOST to a running engine)"
            rm -f "$sock"
            log "starting dockerd ($sock, data root $root)"
            # Room for 256 environment networks (Docker's default pools hold
            # about 31 bridges; tests and bench/deploy's 20 agents make many).
            setsid dockerd --host "unix://$sock" --data-root "$root" \
                --default-address-pool base=10.213.0.0/16,size=24 \
                --exec-root "$tmp/docker/exec" --pidfile "$tmp/docker/dockerd.pid" \
                --log-level warn >"$tmp/docker/dockerd.log" 2>&1 </dev/null &
            local i
            for ((i = 0; i < 120; i++)); do
                docker_ok "$sock" && break
                sleep 0.5
            done
            docker_ok "$sock" || { tail -n 30 "$tmp/docker/dockerd.log" >&2; die "dockerd did not start"; }
            if [[ ${SLIPWAY_TEST_KEEP_DOCKER:-0} != 1 ]]; then
                on_exit stop_docker
            fi
        fi
    fi
    _SLIPWAY_DOCKER_STARTED=1
    export SLIPWAY_TEST_DOCKER_HOST="unix://$sock"
    export DOCKER_HOST="unix://$sock"
    build_test_images
    build_stack_images
}

# build_test_images: slipway-test/web:v1 and :v2 from scripts/test-images (cached by docker).
build_test_images() {
    local ctx="$SLIPWAY_TEST_TMP/docker/image" v
    mkdir -p "$ctx"
    cp "$SLIPWAY_REPO/scripts/test-images/Dockerfile" "$ctx/Dockerfile"
    cp "$(command -v busybox)" "$ctx/busybox"
    for v in v1 v2; do
        DOCKER_BUILDKIT=0 docker build -q --build-arg "VERSION=$v" -t "slipway-test/web:$v" "$ctx" >/dev/null 2>"$ctx/build.log" ||
            { cat "$ctx/build.log" >&2; die "building slipway-test/web:$v failed"; }
    done
    log "test images ready: slipway-test/web:v1, slipway-test/web:v2"
}

# ---------------------------------------------------------------- stack test images
# Real PostgreSQL 15, Redis 7 and nginx 1.22 from Debian's own packages, no registry
# (scripts/test-images/stack/README.md): mmdebstrap builds a bookworm rootfs tarball once
# (cached under ~/.cache/slipway/images), `docker import` makes it an image, and small
# images are built on top of it.

# Bump when the package list or the hooks change: a new tarball and base image follow.
SLIPWAY_STACK_BASE_VERSION=1
SLIPWAY_STACK_BASE_IMAGE="slipway-test/stack-base:$SLIPWAY_STACK_BASE_VERSION"
SLIPWAY_STACK_PACKAGES=postgresql-15,redis-server,nginx-light,busybox,postgresql-client-15,redis-tools
# name:tag → build context under scripts/test-images/stack/ (and build args)
SLIPWAY_STACK_IMAGES=(
    "slipway-test/postgres:15 postgres"
    "slipway-test/redis:7 redis"
    "slipway-test/nginx:1 nginx"
    "slipway-test/api:v1 api VERSION=v1"
    "slipway-test/api:v2 api VERSION=v2"
)

# _stack_mirrors: print mmdebstrap MIRROR arguments, one a line: the host's own Debian
# sources when the host runs bookworm (its configured mirror), else nothing (mmdebstrap's
# default: deb.debian.org with updates and security). SLIPWAY_TEST_STACK_MIRROR overrides.
_stack_mirrors() {
    if [[ -n ${SLIPWAY_TEST_STACK_MIRROR:-} ]]; then
        printf '%s\n' "$SLIPWAY_TEST_STACK_MIRROR"
        return 0
    fi
    local codename
    codename="$(. /etc/os-release 2>/dev/null && printf '%s' "${VERSION_CODENAME:-}")"
    [[ $codename == bookworm ]] || return 0
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        printf '%s\n' /etc/apt/sources.list.d/debian.sources
    elif [[ -f /etc/apt/sources.list ]] && grep -Eq '^deb .*debian.* bookworm' /etc/apt/sources.list; then
        grep -E '^deb .*debian.* bookworm' /etc/apt/sources.list
    fi
}

# stack_base_tarball: print the path of the cached bookworm rootfs tarball, building it
# with mmdebstrap when missing (~1-2 min). Written under a temporary name and renamed, so
# a killed run never leaves a half tarball; a lock keeps concurrent runs from building
# it twice.
stack_base_tarball() {
    local cache="${SLIPWAY_TEST_IMAGE_CACHE:-$HOME/.cache/slipway/images}"
    local tar="$cache/stack-base-bookworm-$SLIPWAY_STACK_BASE_VERSION.tar"
    mkdir -p "$cache"
    if [[ ! -s $tar ]]; then
        ensure_apt_packages mmdebstrap
        # Without root mmdebstrap runs in unshare mode: newuidmap/newgidmap.
        is_root || ensure_apt_packages uidmap
        (
            flock -w 900 9 || die "timed out waiting for another build of $tar"
            [[ -s $tar ]] && exit 0
            rm -f "$tar".partial.*
            local part="$tar.partial.$$" aptopts=() mirrors=()
            mapfile -t mirrors < <(_stack_mirrors)
            # Honour the host's apt setting for snapshot mirrors (old Release files).
            if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false";'; then
                aptopts+=(--aptopt='Acquire::Check-Valid-Until "false"')
            fi
            log "building the stack base rootfs: mmdebstrap bookworm (${mirrors[*]:-deb.debian.org}) -> $tar"
            local t0=$SECONDS
            mmdebstrap --variant=apt --format=tar "${aptopts[@]}" \
                --include="$SLIPWAY_STACK_PACKAGES" \
                --dpkgopt='path-exclude=/usr/share/man/*' \
                --dpkgopt='path-exclude=/usr/share/doc/*' \
                --dpkgopt='path-exclude=/usr/share/info/*' \
                --dpkgopt='path-exclude=/usr/share/locale/*' \
                --customize-hook='rm -rf "$1"/var/lib/postgresql/15/main "$1"/etc/postgresql/15/main' \
                bookworm "$part" "${mirrors[@]}" >"$cache/mmdebstrap.log" 2>&1 || {
                tail -n 30 "$cache/mmdebstrap.log" >&2
                rm -f "$part"
                die "mmdebstrap failed (log: $cache/mmdebstrap.log)"
            }
            mv -f "$part" "$tar"
            log "stack base rootfs built in $((SECONDS - t0)) s ($(du -h "$tar" | cut -f1))"
        ) 9>"$cache/stack-base.lock" || die "no stack base rootfs at $tar"
    fi
    printf '%s\n' "$tar"
}

# build_stack_images: the stack test images (slipway-test/postgres:15, redis:7, nginx:1,
# api:v1, api:v2) on the imported base image. Needs DOCKER_HOST (start_docker sets it).
# The base is imported only when missing; the small images come from docker's cache.
build_stack_images() {
    local dir="$SLIPWAY_REPO/scripts/test-images/stack" entry name ctx rest tar t0=$SECONDS
    local -a args
    if ! docker image inspect "$SLIPWAY_STACK_BASE_IMAGE" >/dev/null 2>&1; then
        tar="$(stack_base_tarball)" || die "no stack base rootfs"
        log "docker import $tar as $SLIPWAY_STACK_BASE_IMAGE"
        docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
            "$tar" "$SLIPWAY_STACK_BASE_IMAGE" >/dev/null ||
            die "docker import of $tar failed"
    fi
    mkdir -p "$SLIPWAY_TEST_TMP/docker"
    for entry in "${SLIPWAY_STACK_IMAGES[@]}"; do
        read -r name ctx rest <<<"$entry"
        args=(--build-arg "BASE=$SLIPWAY_STACK_BASE_IMAGE")
        [[ -n ${rest:-} ]] && args+=(--build-arg "$rest")
        DOCKER_BUILDKIT=0 docker build -q "${args[@]}" -t "$name" "$dir/$ctx" >/dev/null 2>"$SLIPWAY_TEST_TMP/docker/stack-build.log" ||
            { cat "$SLIPWAY_TEST_TMP/docker/stack-build.log" >&2; die "building $name failed"; }
    done
    log "stack test images ready in $((SECONDS - t0)) s: slipway-test/postgres:15, redis:7, nginx:1, api:v1, api:v2"
}

# stop_docker: remove Slipway test containers and stop the dockerd started by start_docker.
stop_docker() {
    local tmp=${SLIPWAY_TEST_TMP:-} pid
    [[ -n $tmp && -f $tmp/docker/dockerd.pid ]] || return 0
    pid="$(cat "$tmp/docker/dockerd.pid")"
    docker ps -aq --filter label=slipway.managed 2>/dev/null | xargs -r docker rm -f >/dev/null 2>&1 || true
    # Environment networks of test agents (Docker allows about 31 bridges by default).
    docker network ls -q --filter label=slipway.managed 2>/dev/null | xargs -r docker network rm >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    unset _SLIPWAY_DOCKER_STARTED
    log "dockerd stopped"
}

# ---------------------------------------------------------------- schemathesis

# Pinned on purpose: a new release may bring new checks; bump it deliberately.
SCHEMATHESIS_VERSION=4.32.5

# ensure_schemathesis: PyPI schemathesis==$SCHEMATHESIS_VERSION in its own venv
# under ~/.cache/slipway; prints the path of its `st`.
ensure_schemathesis() {
    local venv="$HOME/.cache/slipway/schemathesis-$SCHEMATHESIS_VERSION"
    if [[ ! -f $venv/.installed ]]; then
        [[ ${SLIPWAY_TEST_NO_INSTALL:-0} == 1 ]] && die "schemathesis is missing at $venv (SLIPWAY_TEST_NO_INSTALL=1)"
        command -v python3 >/dev/null 2>&1 || ensure_apt_packages python3 python3-venv
        rm -rf "$venv"
        python3 -m venv "$venv" >&2 || {
            ensure_apt_packages python3-venv
            rm -rf "$venv"
            python3 -m venv "$venv" >&2
        }
        log "pip install schemathesis==$SCHEMATHESIS_VERSION into $venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
        touch "$venv/.installed"
    fi
    printf '%s\n' "$venv/bin/st"
}

# Operations schemathesis skips: the event streams and log follows never end
# and the agent WebSocket needs an upgrade (docs/api.md says why).
SCHEMATHESIS_EXCLUDE='/events$|/logs$|/agent/connect$'

# run_schemathesis SLIPWAY_BIN: the real server (fresh SQLite data dir, free
# port) with an admin API token, then a bounded schemathesis run over the
# server's own OpenAPI document: every check, a few examples per operation
# (SLIPWAY_TEST_SCHEMATHESIS_EXAMPLES, default 10). Failures accepted on
# purpose are listed in docs/api.md and in scripts/schemathesis-baseline.json.
# Any panic in the server log fails the run too.
run_schemathesis() {
    local bin=$1 st dir port pid token rc=0 baseline="$SLIPWAY_REPO/scripts/schemathesis-baseline.json"
    local -a accepted=()
    [[ -f $baseline ]] && accepted=(--baseline "$baseline")
    # SLIPWAY_TEST_SCHEMATHESIS_RECORD=1 records this run's failures as accepted
    # (then list each in docs/api.md with its reason).
    [[ ${SLIPWAY_TEST_SCHEMATHESIS_RECORD:-0} == 1 ]] && accepted=(--baseline "$baseline" --baseline-update)
    st="$(ensure_schemathesis)"
    dir="$(mktemp -d "${TMPDIR:-/tmp}/slipway-schemathesis.XXXXXX")"
    port="$(free_port 18480)"
    local -a env=(env -i "PATH=$PATH" "HOME=$HOME" "SLIPWAY_DATA_DIR=$dir/data"
        "SLIPWAY_BIND=127.0.0.1:$port" "SLIPWAY_LOG=warn")
    token="$("${env[@]}" "$bin" token create --role admin --name schemathesis 2>"$dir/server.log")" || {
        cat "$dir/server.log" >&2
        return 1
    }
    "${env[@]}" "$bin" serve >>"$dir/server.log" 2>&1 &
    pid=$!
    on_exit "kill $pid 2>/dev/null || true"
    wait_http "http://127.0.0.1:$port/health" 60 "$pid" || {
        tail -n 50 "$dir/server.log" >&2
        return 1
    }
    log "schemathesis $SCHEMATHESIS_VERSION against 127.0.0.1:$port (report: $dir/report)"
    SLIPWAY_TEST_SCHEMATHESIS_TOKEN="$token" "$st" --no-color \
        --config-file "$SLIPWAY_REPO/scripts/schemathesis.toml" \
        run "http://127.0.0.1:$port/api/v1/openapi.json" \
        --checks all \
        --phases examples,coverage,fuzzing \
        --max-examples "${SLIPWAY_TEST_SCHEMATHESIS_EXAMPLES:-10}" \
        --exclude-path-regex "$SCHEMATHESIS_EXCLUDE" \
        "${accepted[@]}" \
        --request-timeout 10 \
        --seed 12 \
        --workers 1 \
        --report junit,ndjson --report-dir "$dir/report" || rc=$?
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if grep -q 'panicked' "$dir/server.log"; then
        log "the server panicked during the run:"
        grep -B2 -A10 'panicked' "$dir/server.log" | head -n 60 >&2
        rc=1
    fi
    return "$rc"
}
