#!/usr/bin/env bash
# The TypeScript client's tests: installs Node.js and npm from Debian's
# packages when node is missing (as root or through sudo), installs the
# locked dev dependencies (npm ci), compiles the client (tsc, strict), builds
# the embedded matchmaker, and runs the tests with node --test against it.
#
#   QM_MATCHMAKER_BIN  a matchmaker binary to test against, instead of one
#                      built here with `go build ./services/matchmaker`
#
# Needs the npm registry (or an npm cache holding package-lock.json's
# packages) and, without QM_MATCHMAKER_BIN, Go on PATH. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "clients/typescript: installing Node.js and npm from Debian's packages"
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq nodejs npm
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "clients/typescript: Node $(node --version) is too old: the tests need 18 or newer (the package asks for 20)" >&2
  exit 1
fi

npm ci --no-audit --no-fund --loglevel=error
npm run --silent build

if [ -z "${QM_MATCHMAKER_BIN:-}" ]; then
  command -v go >/dev/null || { echo "clients/typescript: Go must be on PATH to build the matchmaker (or set QM_MATCHMAKER_BIN)" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$root" && go build -o "$tmp/matchmaker" ./services/matchmaker)
  export QM_MATCHMAKER_BIN="$tmp/matchmaker"
fi

npm test --silent
