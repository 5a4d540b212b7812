#!/usr/bin/env bash
# Makes sure RabbitMQ and Redis answer on loopback, installing them from
# Debian's packages and starting them when they do not. Safe to run again.
set -euo pipefail

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port name seconds
  for _ in $(seq "$3"); do
    listening "$1" && return 0
    sleep 1
  done
  echo "ensure-services: $2 did not start listening on 127.0.0.1:$1" >&2
  return 1
}

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=""
install() {
  if [ -z "$apt_updated" ]; then
    sudo_ apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "$@"
}

if ! listening 6379; then
  command -v redis-server >/dev/null || install redis-server
  echo "ensure-services: starting Redis"
  sudo_ redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_for 6379 Redis 30
fi

if ! listening 5672; then
  command -v rabbitmq-server >/dev/null || install rabbitmq-server
  echo "ensure-services: starting RabbitMQ"
  sudo_ rabbitmq-server -detached
  wait_for 5672 RabbitMQ 120
  sudo_ rabbitmqctl await_startup >/dev/null 2>&1 || true
fi
