# Shortcuts; the scripts hold the logic.
.PHONY: test run build

test:
	scripts/test.sh

run:
	go run ./services/matchmaker

build:
	go build -o bin/ ./services/...

# The end-to-end benchmark; docs/benchmarks.md explains its table.
.PHONY: bench
bench:
	scripts/bench.sh
