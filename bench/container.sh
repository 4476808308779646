#!/usr/bin/env bash
# Build the image and start compose.yaml (gateway x2 + PostgreSQL + Redis) with a container
# engine, check /health/ready through each gateway, make one demo call, and stop everything.
#
#   bash bench/container.sh            # needs docker (with compose) or podman (with podman-compose)
#
# When no container engine runs on this machine it says so and exits 3: nothing is faked.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=""
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  engine="docker compose"
elif command -v podman >/dev/null 2>&1 && podman info >/dev/null 2>&1 && command -v podman-compose >/dev/null 2>&1; then
  engine="podman-compose"
fi
if [ -z "$engine" ]; then
  echo "container.sh: no container engine runs here (docker info / podman info fail, or no compose);" \
       "the Dockerfile and compose.yaml are not exercised on this machine." >&2
  exit 3
fi

export POSTGRES_PASSWORD="bench-$RANDOM$RANDOM" COMPOSE_PROJECT_NAME="aicredits-bench"
cleanup() { $engine down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT
$engine build
$engine up -d --scale gateway=2
for port in 8000 8001; do
  for _ in $(seq 60); do
    if curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1; then break; fi
    sleep 2
  done
  echo "gateway on :$port: $(curl -fsS "http://127.0.0.1:$port/health/ready")"
done
key=$($engine run --rm --no-deps migrate keys create --email bench@example.com --credits 10 --json |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
curl -fsS http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' -d '{"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]}'
echo
$engine run --rm --no-deps migrate ledger verify
docker image inspect aicredits:local --format 'image size: {{.Size}} bytes, user: {{.Config.User}}' 2>/dev/null || true
