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

# The A/B benchmark of two commits, alternating: make ab OLD=commit [NEW=commit]
.PHONY: ab
ab:
	scripts/ab.sh $(OLD) $(NEW)

# The fault-injection run (about 10 minutes); README.md's "Faults" explains
# its table. The test command runs a short version.
.PHONY: chaos
chaos:
	go run ./loadtest/chaos
