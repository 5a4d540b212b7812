#!/usr/bin/env bash
# The test command: every test, with the race detector, against real RabbitMQ
# and Redis on loopback (installed and started when missing). Extra arguments
# go to `go test`, e.g. scripts/test.sh -run TestCancel ./matcher/.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "test: Go 1.26 or newer must be on PATH" >&2; exit 1; }
scripts/ensure-services.sh

# The dashboard's browser test (internal/dashboard) drives Debian's
# Chromium headless. Installed when missing, as root or through sudo; if it
# cannot be, the test skips, except under CI=true, where it fails.
if [ ! -x /usr/bin/chromium ]; then
  sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  echo "test: installing chromium for the dashboard's browser test"
  if ! { sudo_ apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq chromium; }; then
    echo "test: could not install chromium: the dashboard's browser test will skip (and fail under CI=true)" >&2
  fi
fi

# ko builds the Kubernetes images in k8s/images_test.go (no registry, no
# network past the module proxy).
gobin="$(go env GOPATH)/bin"
if ! command -v ko >/dev/null && [ ! -x "$gobin/ko" ]; then
  echo "test: installing ko (go install github.com/google/ko@v0.19.1)" >&2
  go install github.com/google/ko@v0.19.1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change:" $unformatted >&2
  exit 1
fi
go vet ./...
go tool staticcheck ./...

all=false
if [ $# -eq 0 ]; then all=true; set -- ./...; fi
go test -race -count=1 -timeout 20m "$@"
if $all; then
  # The TypeScript client, against the embedded matchmaker.
  clients/typescript/test.sh
fi
