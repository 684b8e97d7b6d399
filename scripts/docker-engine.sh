#!/usr/bin/env bash
# A private Docker engine for proxytest's docker runtime and its tests.
#
#   scripts/docker-engine.sh start    install Debian's docker.io if dockerd is missing,
#                                     then start an isolated dockerd (idempotent)
#   scripts/docker-engine.sh stop     stop that dockerd (by its pid only)
#   scripts/docker-engine.sh status   exit 0 if it answers, else 1
#   scripts/docker-engine.sh env      print the DOCKER_HOST line for it
#   scripts/docker-engine.sh exec CMD [ARG...]
#                                     run CMD where the engine's network is (see netns)
#
# The state lives in ${PROXYTEST_DOCKER_DIR:-/tmp/proxytest-docker}: data/, exec/,
# docker.sock, docker.pid, dockerd.log. The daemon leaves the host network alone:
# no bridge, no iptables rules, no IP forwarding or masquerading, so containers
# run with --network host (or none). It never touches a system docker service.
#
#   eval "$(scripts/docker-engine.sh env)"   # then docker / docker.from_env() use it
#
# PROXYTEST_DOCKER_NETNS=1: an engine WITH a bridge network (docker0, published
# ports), for `--docker-network bridge`, that still leaves the host network
# alone: dockerd runs in a network namespace of its own (`unshare --net`, its
# loopback brought up), so docker0, the containers' veths and the published
# ports exist only in there. The state dir defaults to /tmp/proxytest-docker-bridge.
# Clients of published ports (127.0.0.1:<port>) and the origin behind the
# gateway must run in the same namespace:
#
#   export PROXYTEST_DOCKER_NETNS=1
#   scripts/docker-engine.sh start && eval "$(scripts/docker-engine.sh env)"
#   scripts/docker-engine.sh exec .venv/bin/proxytest run --runtime docker --docker-network bridge
#   scripts/docker-engine.sh stop
#
# Ports are published by the userland proxy (docker-proxy) with iptables off:
# no firewall rule is written even inside the namespace. Measured with Docker
# 20.10 (Debian 12): that works, as do --iptables=true with or without the
# userland proxy (Docker sets route_localnet on docker0 for the latter); with
# both off nothing answers on the published port (the connection times out).
# `exec` is `nsenter --net=/proc/<dockerd pid>/ns/net CMD`.
set -euo pipefail

netns=${PROXYTEST_DOCKER_NETNS:-0}
case "$netns" in 1 | true | yes) netns=1 ;; *) netns=0 ;; esac
if [ "$netns" = 1 ]; then
  dir=${PROXYTEST_DOCKER_DIR:-/tmp/proxytest-docker-bridge}
else
  dir=${PROXYTEST_DOCKER_DIR:-/tmp/proxytest-docker}
fi
case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
dir=${dir%/}
sock="$dir/docker.sock"
pidfile="$dir/docker.pid"
logfile="$dir/dockerd.log"
start_timeout=30
stop_timeout=15

log() { printf '[docker-engine] %s\n' "$*" >&2; }

usage() {
  echo "usage: $0 start|stop|status|env | exec CMD [ARG...]" >&2
  exit 64
}

# Run a command as root: directly, via sudo, or not at all (exit 2).
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    log "root is needed for: $*"
    log "run this script as root or install sudo (dockerd and apt-get need root)"
    exit 2
  fi
}

need_root_or_sudo() {
  if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1; then
    log "starting dockerd needs root: run this script as root or install sudo"
    exit 2
  fi
}

# 0 if the daemon on our socket answers /_ping.
ping() {
  [ -S "$sock" ] || return 1
  if command -v curl >/dev/null 2>&1; then
    [ "$(curl -fsS --max-time 2 --unix-socket "$sock" http://localhost/_ping 2>/dev/null)" = OK ]
  elif command -v python3 >/dev/null 2>&1; then
    python3 - "$sock" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: localhost\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
sys.exit(0 if head.split(b" ")[1:2] == [b"200"] and body.strip() == b"OK" else 1)
PY
  else
    log "neither curl nor python3 is available to check the daemon"
    return 1
  fi
}

# The pid in our pidfile if that process is alive, else nothing.
live_pid() {
  local pid
  [ -f "$pidfile" ] || return 1
  pid=$(tr -dc 0-9 <"$pidfile" 2>/dev/null || true)
  [ -n "$pid" ] || return 1
  [ -d "/proc/$pid" ] || return 1
  # A recycled pid is not our dockerd.
  case "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" in
    *dockerd*"$pidfile"*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

install_docker() {
  command -v dockerd >/dev/null 2>&1 && return 0
  [ -x /usr/sbin/dockerd ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    log "dockerd is missing and apt-get is not available: install Docker Engine with your package manager"
    exit 2
  fi
  need_root_or_sudo
  log "dockerd is missing: installing Debian's docker.io with apt-get"
  local policy=/usr/sbin/policy-rc.d
  if [ -e "$policy" ]; then
    # Someone else's policy: keep it (it may already forbid starts) and do not remove it.
    log "$policy exists already; leaving it in place"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io
    return 0
  fi
  # policy-rc.d exiting 101: the package must not start the system docker service.
  trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  trap 'exit 130' INT TERM HUP  # so the EXIT trap runs on those too
  as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io
  as_root rm -f "$policy"
  trap - EXIT INT TERM HUP
  if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
    log "docker.io is installed but dockerd is still not found"
    exit 2
  fi
}

cmd_start() {
  install_docker
  if ping; then
    log "already running (socket $sock)"
    return 0
  fi
  need_root_or_sudo
  mkdir -p "$dir"
  local dockerd pid launched=""
  dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
  if pid=$(live_pid); then
    log "dockerd $pid is alive but does not answer yet; waiting for it"
  else
    reap_orphans
    rm -f "$sock" "$pidfile"
    local launch=(setsid "$dockerd") group_args=() network_args
    # No bridge: containers use the host network (or none); nothing to publish.
    network_args=(--bridge=none --userland-proxy=false)
    if [ "$netns" = 1 ]; then
      need_netns_tools
      # A namespace of its own, its loopback up (published ports bind 127.0.0.1
      # there), then dockerd in it with the default bridge and docker-proxy.
      # dockerd's pid is the namespace's lifeline: the namespace ends with it.
      # shellcheck disable=SC2016  # $@ is expanded by the inner sh
      launch=(setsid unshare --net --fork -- sh -c 'ip link set lo up && exec "$@"' sh "$dockerd")
      network_args=(--userland-proxy=true)
    fi
    if [ "$(id -u)" != 0 ]; then
      launch=(sudo "${launch[@]}")
      # Under sudo the socket would be root's only: give it the caller's group.
      group_args=(--group "$(id -g)")
    fi
    : >"$logfile"
    "${launch[@]}" \
      --data-root "$dir/data" \
      --exec-root "$dir/exec" \
      -H "unix://$sock" \
      --pidfile "$pidfile" \
      "${network_args[@]}" \
      --iptables=false \
      --ip6tables=false \
      --ip-forward=false \
      --ip-masq=false \
      --shutdown-timeout 5 \
      --log-level=warn \
      "${group_args[@]}" \
      </dev/null >>"$logfile" 2>&1 &
    launched=$!
    disown || true
  fi
  local deadline=$((SECONDS + start_timeout))
  while ((SECONDS < deadline)); do
    if ping; then
      log "dockerd $(cat "$pidfile" 2>/dev/null || echo '?') answers on $sock"
      return 0
    fi
    if [ -n "$launched" ] && ! [ -d "/proc/$launched" ]; then
      log "dockerd exited while starting; last lines of $logfile:"
      tail -n 30 "$logfile" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
  log "dockerd did not answer on $sock within ${start_timeout}s; last lines of $logfile:"
  tail -n 30 "$logfile" >&2 || true
  exit 1
}

need_netns_tools() {
  local tool
  for tool in unshare nsenter ip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "PROXYTEST_DOCKER_NETNS=1 needs $tool (util-linux / iproute2): install it"
      exit 2
    fi
  done
}

# Run a command in the engine's network namespace (netns mode), else directly.
cmd_exec() {
  [ $# -gt 0 ] || usage
  if [ "$netns" != 1 ]; then
    exec "$@"
  fi
  local pid
  if ! pid=$(live_pid) || ! ping; then
    log "no engine answers on $sock: PROXYTEST_DOCKER_NETNS=1 $0 start first"
    exit 1
  fi
  need_netns_tools
  if [ "$(id -u)" = 0 ]; then
    exec nsenter --net="/proc/$pid/ns/net" -- "$@"
  fi
  # nsenter needs root; drop back to the caller once inside.
  exec sudo nsenter --net="/proc/$pid/ns/net" -- \
    setpriv --reuid "$(id -u)" --regid "$(id -g)" --init-groups -- env "PATH=$PATH" "$@"
}

# Children of a pid (threads' children included).
children_of() {
  local pid=$1
  if command -v pgrep >/dev/null 2>&1; then
    pgrep -P "$pid" 2>/dev/null || true
  else
    cat /proc/"$pid"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true
  fi
}

# containerd shims of THIS state dir (found by its private containerd address)
# whose dockerd died without stopping its containers (SIGKILL, OOM): they keep
# the containers (and their ports) alive, and a new containerd hangs restoring
# them. Only processes naming exactly our address are listed.
orphan_shims() {
  local addr="$dir/exec/containerd/containerd.sock" p first
  for p in /proc/[0-9]*; do
    first=$(tr '\0' '\n' <"$p/cmdline" 2>/dev/null | head -n 1) || continue
    case "${first##*/}" in containerd-shim*) ;; *) continue ;; esac
    if tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$addr"; then
      echo "${p#/proc/}"
    fi
  done
}

reap_orphans() {
  local shim kid
  for shim in $(orphan_shims); do
    # Its child is the container's init (pid 1 of the container's pid
    # namespace): killing it ends the whole container.
    for kid in $(children_of "$shim"); do
      log "killing container process $kid left by shim $shim"
      as_root kill -KILL "$kid" 2>/dev/null || true
    done
    wait_gone "$shim" 3 || true
    if [ -d "/proc/$shim" ]; then
      log "killing orphaned containerd shim $shim"
      as_root kill -KILL "$shim" 2>/dev/null || true
      wait_gone "$shim" 3 || true
    fi
  done
}

# Mounts dockerd leaves under the state dir when it stops (the data-root bind
# mount, exec/netns/default; overlay mounts after a SIGKILL): unmount them,
# deepest first, so the state dir can be removed. Only paths inside $dir.
unmount_leftovers() {
  local m
  awk -v d="$dir/" 'index($2, d) == 1 || $2 == substr(d, 1, length(d) - 1) { print $2 }' /proc/mounts |
    awk '{ print length($0) " " $0 }' | sort -rn | cut -d' ' -f2- |
    while IFS= read -r m; do
      m=$(printf '%b' "$m")  # /proc/mounts escapes spaces as \040
      as_root umount "$m" 2>/dev/null || as_root umount -l "$m" 2>/dev/null ||
        log "could not unmount $m"
    done
}

wait_gone() {  # pid seconds -> 0 if gone in time
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    [ -d "/proc/$pid" ] || return 0
    # A zombie is gone for our purposes.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && return 0
    sleep 0.1
  done
  return 1
}

cmd_stop() {
  local pid kids kid
  if ! pid=$(live_pid); then
    log "not running"
    reap_orphans
    unmount_leftovers
    rm -f "$pidfile"
    if [ -S "$sock" ] && ! ping; then rm -f "$sock"; fi
    return 0
  fi
  kids=$(children_of "$pid")
  as_root kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$stop_timeout"; then
    log "dockerd $pid did not stop within ${stop_timeout}s: SIGKILL"
    as_root kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || log "dockerd $pid is still there after SIGKILL"
  fi
  # dockerd stops its containerd itself; one that survives is killed by its pid.
  for kid in $kids; do
    if [ -d "/proc/$kid" ]; then
      as_root kill -TERM "$kid" 2>/dev/null || true
      wait_gone "$kid" 5 || as_root kill -KILL "$kid" 2>/dev/null || true
    fi
  done
  reap_orphans
  unmount_leftovers
  as_root rm -f "$sock" "$pidfile"
  log "stopped dockerd $pid"
}

cmd_status() {
  local pid
  if ping; then
    pid=$(cat "$pidfile" 2>/dev/null || echo '?')
    if [ "$netns" = 1 ]; then
      echo "running: $sock (pid $pid, network namespace /proc/$pid/ns/net)"
    else
      echo "running: $sock (pid $pid)"
    fi
    return 0
  fi
  echo "not running ($sock)"
  return 1
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  exec) cmd_exec "$@" ;;
esac
[ $# -eq 0 ] || usage
case "$command" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export DOCKER_HOST=unix://$sock" ;;
  *) usage ;;
esac
