#!/usr/bin/env bash
# The test command: every test, with the race detector, against real RabbitMQ
# and Redis on loopback (installed and started when missing). Extra arguments
# go to `go test`, e.g. scripts/test.sh -run TestCancel ./matcher/.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v go >/dev/null || { echo "test: Go 1.26 or newer must be on PATH" >&2; exit 1; }
scripts/ensure-services.sh

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change:" $unformatted >&2
  exit 1
fi
go vet ./...
go tool staticcheck ./...

if [ $# -eq 0 ]; then set -- ./...; fi
go test -race -count=1 -timeout 20m "$@"
