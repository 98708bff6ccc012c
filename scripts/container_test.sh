#!/usr/bin/env bash
# Builds and runs the container image of deploy/Dockerfile without pulling any base image (no
# registry is reachable from CI): the final stage of deploy/Dockerfile (its USER, ENV, EXPOSE,
# HEALTHCHECK, STOPSIGNAL and ENTRYPOINT lines as shipped) on a base assembled here, FROM
# scratch: the debug binary the test command builds anyway, the shared libraries ldd lists, and
# an /etc/passwd with the image's non-root user. Then it checks, with podman:
#   - the container serves /health and runs as uid 10001;
#   - `switchboard healthcheck` inside it (the image's HEALTHCHECK) passes;
#   - SIGTERM reaches the process (exec-form ENTRYPOINT) and it exits 0 within its shutdown
#     timeout.
# Podman keeps its images and containers under target/container-test, not in the system store.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

work=target/container-test
binary=target/debug/switchboard
shutdown_timeout=5
image=localhost/switchboard-test:latest
name="switchboard-test-$$"

podman=(podman --root "$PWD/$work/storage" --runroot "$PWD/$work/run" --storage-driver vfs)
# crun cannot start containers on hosts with hybrid cgroups (v1 controllers beside a v2
# mount, as on some CI machines); runc can.
if command -v runc >/dev/null; then
  podman+=(--runtime runc)
fi

cargo build -p switchboard --locked --quiet

rm -rf "$work/context"
mkdir -p "$work/context/root/usr/local/bin" "$work/context/root/etc"
cp "$binary" "$work/context/root/usr/local/bin/switchboard"
# The dynamic loader and every library the binary links, at the paths ldd resolves.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$work/context/root$(dirname "$lib")"
  cp -L "$lib" "$work/context/root$lib"
done
echo 'switchboard:x:10001:10001::/nonexistent:/usr/sbin/nologin' >"$work/context/root/etc/passwd"
echo 'switchboard:x:10001:' >"$work/context/root/etc/group"

# deploy/Dockerfile's final stage, on the assembled base: FROM becomes scratch, its RUN lines
# (creating the user) are what /etc/passwd above does, and the binary comes from the context.
{
  awk '/^FROM /{stage=""} {stage = stage $0 "\n"} END {printf "%s", stage}' deploy/Dockerfile |
    sed -e 's/^FROM .*/FROM scratch/' \
      -e '/^RUN /d' \
      -e 's|^COPY --from=build .*|COPY root/ /|'
  echo 'ENV PATH=/usr/local/bin'
} >"$work/context/Containerfile"

echo "== container image (podman, no base image pulled)"
"${podman[@]}" build --quiet --format docker --tag "$image" "$work/context" >/dev/null

cleanup() {
  "${podman[@]}" rm --force --time 0 "$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Host networking, and limits the host allows: without CAP_SYS_RESOURCE podman's defaults for
# root (nofile and nproc above the host's) fail. The health check runs on demand below, not
# from a systemd timer (podman logs an error when there is no systemd; it is harmless).
"${podman[@]}" run --detach --name "$name" --network host \
  --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
  --health-interval disable \
  --env SWITCHBOARD_PORT="$port" --env SWITCHBOARD_SHUTDOWN_TIMEOUT="${shutdown_timeout}s" \
  "$image" >/dev/null

echo "== waiting for /health on port $port"
for _ in $(seq 100); do
  if "$binary" healthcheck --url "http://127.0.0.1:$port/health" --timeout 1s >/dev/null 2>&1; then
    break
  fi
  if [ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$name")" != true ]; then
    "${podman[@]}" logs "$name" >&2
    echo "FAIL: the container exited" >&2
    exit 1
  fi
  sleep 0.2
done
"$binary" healthcheck --url "http://127.0.0.1:$port/health"

pid=$("${podman[@]}" inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[ "$uid" = 10001 ] || {
  echo "FAIL: runs as uid $uid, not 10001" >&2
  exit 1
}
echo "runs as uid $uid"

echo "== the image's HEALTHCHECK (switchboard healthcheck inside the container)"
"${podman[@]}" healthcheck run "$name"
"${podman[@]}" exec "$name" switchboard healthcheck

echo "== SIGTERM: exit 0 within the shutdown timeout (${shutdown_timeout}s)"
"${podman[@]}" kill --signal TERM "$name" >/dev/null
status=$(timeout "$((shutdown_timeout + 5))" "${podman[@]}" wait "$name")
if [ "$status" != 0 ]; then
  "${podman[@]}" logs "$name" >&2
  echo "FAIL: exit status $status after SIGTERM" >&2
  exit 1
fi
"${podman[@]}" logs "$name" 2>&1 | grep -q '"shutdown complete"' || {
  "${podman[@]}" logs "$name" >&2
  echo "FAIL: no 'shutdown complete' in the log" >&2
  exit 1
}
echo "== container test passed"
