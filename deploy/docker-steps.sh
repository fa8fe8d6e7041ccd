#!/usr/bin/env bash
# Runs deploy/Dockerfile's steps without a container builder (where no Docker daemon, podman or
# buildah can run, or no base image can be pulled), and checks what the image promises:
#   build   the binary as the build stage does (skipped when KYCGATE_BIN names one already built);
#   models  `kycgate models fetch --allow-missing` into a staged /models (FETCH_MODELS=1), or the
#           model directory KYCGATE_MODEL_DIR names (FETCH_MODELS=0, as a mounted /models);
#   runtime the runtime stage's files in a staged /app, the Dockerfile's ENV, its USER (a non-root
#           uid), `serve`, then its HEALTHCHECK command as that user, and /readyz.
# Needs root (to run as the image's uid). Usage, from anywhere:
#   deploy/docker-steps.sh                                   # release build, as the Dockerfile
#   KYCGATE_BIN=target/debug/kycgate FETCH_MODELS=0 KYCGATE_MODEL_DIR=../shared/models deploy/docker-steps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dockerfile=deploy/Dockerfile
FETCH_MODELS="${FETCH_MODELS:-1}"

log() { printf '\n== %s\n' "$*"; }
[ "$(id -u)" = 0 ] || { echo "run as root: the runtime step switches to the image's non-root uid" >&2; exit 2; }

# What the runtime stage declares: its ENV pairs, USER and HEALTHCHECK command.
read_dockerfile() {
  python3 - "$dockerfile" "$1" <<'PY'
import json, re, shlex, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
runtime = text.split("AS runtime", 1)[1]
what = sys.argv[2]
for line in runtime.splitlines():
    line = line.strip()
    if what == "env" and line.startswith("ENV "):
        for pair in shlex.split(line[4:]):
            print(pair)
    elif what == "user" and line.startswith("USER "):
        print(line.split()[1])
    elif what == "healthcheck" and line.startswith("HEALTHCHECK "):
        print(" ".join(shlex.quote(a) for a in json.loads(line.split("CMD", 1)[1])))
PY
}

log "build stage"
if [ -n "${KYCGATE_BIN:-}" ]; then
  bin="$(realpath "$KYCGATE_BIN")"
  echo "using $bin"
else
  cargo build --release --locked --features otlp-grpc --bin kycgate
  bin="$(realpath target/release/kycgate)"
fi

stage=$(mktemp -d /tmp/kycgate-image.XXXXXX)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$stage"; }
trap cleanup EXIT
chmod 755 "$stage"
mkdir -p "$stage/usr/local/bin" "$stage/app" "$stage/models"
install -m 0755 "$bin" "$stage/usr/local/bin/kycgate"

log "models stage (FETCH_MODELS=$FETCH_MODELS)"
if [ "$FETCH_MODELS" = 1 ]; then
  env -u KYCGATE_MODEL_DIR KYCGATE_CACHE_DIR="$stage/models" HOME=/tmp \
    "$stage/usr/local/bin/kycgate" models fetch --allow-missing
  models="$stage/models"
else
  models="$(realpath "${KYCGATE_MODEL_DIR:?FETCH_MODELS=0 needs KYCGATE_MODEL_DIR (the mounted /models)}")"
fi

log "runtime stage"
cp -r providers sim models.toml "$stage/app/"
user=$(read_dockerfile user)
uid=${user%%:*}; gid=${user##*:}
[ "$uid" != 0 ] || { echo "FAIL  the Dockerfile's USER is root" >&2; exit 1; }
mapfile -t envs < <(read_dockerfile env)
health=$(read_dockerfile healthcheck)
[ -n "$health" ] || { echo "FAIL  the Dockerfile has no HEALTHCHECK" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The image's environment, with paths mapped into the stage and a free loopback port.
run_env=(env -i PATH=/usr/bin:/bin HOME=/app "${envs[@]}" KYCGATE_MODEL_DIR="$models"
         KYCGATE__SERVER__LISTEN="127.0.0.1:$port")
as_user=(setpriv --reuid "$uid" --regid "$gid" --clear-groups)
echo "USER $uid:$gid, ENV ${envs[*]}"
(cd "$stage/app" && exec "${as_user[@]}" "${run_env[@]}" "$stage/usr/local/bin/kycgate" serve --api-key docker-steps) \
  > "$stage/serve.log" 2>&1 &
pid=$!

# HEALTHCHECK: its command (the image path mapped into the stage), as the image's user.
health=${health//\/usr\/local\/bin\/kycgate/$stage\/usr\/local\/bin\/kycgate}
for _ in $(seq 1 120); do
  if (cd "$stage/app" && eval "${as_user[*]} ${run_env[*]} $health") >/dev/null 2>&1; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { cat "$stage/serve.log"; echo "FAIL  the gateway exited" >&2; exit 1; }
  sleep 1
done
(cd "$stage/app" && eval "${as_user[*]} ${run_env[*]} $health")
echo "ok    HEALTHCHECK ($health)"
running_uid=$(ps -o uid= -p "$pid" | tr -d ' ')
[ "$running_uid" = "$uid" ] || { echo "FAIL  serve runs as uid $running_uid, not $uid" >&2; exit 1; }
echo "ok    serve runs as uid $running_uid (non-root)"
curl -fsS "http://127.0.0.1:$port/readyz" || { echo; echo "WARN  /readyz is not ready (models missing?)"; }
echo
echo "all Dockerfile steps passed"
