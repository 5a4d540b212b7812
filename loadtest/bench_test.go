package main

import (
	"context"
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

var benchRate = flag.Float64("bench.rate", 1000, "players per second BenchmarkPipeline offers")

// BenchmarkPipeline runs the suite inside the test process, the embedded
// matchmaker or front, assigner and two matchers on the real RabbitMQ and
// Redis, and drives it over loopback HTTP with the pipeline scenario at
// -bench.rate players per second; an op is one player. It is there for the
// profiles of the suite under load, which its processes do not serve:
//
//	go test -run '^$' -bench 'Pipeline/distributed' -benchtime 20000x \
//	    -cpuprofile cpu.out -blockprofile block.out -mutexprofile mutex.out ./loadtest
//
// The load generator shares the process; its functions are those of package
// main. The figures are the generator's and so include its overhead.
func BenchmarkPipeline(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		url := startEmbedded(b)
		benchPipeline(b, url, url)
	})
	b.Run("distributed", func(b *testing.B) {
		front, assigner := startDistributed(b)
		benchPipeline(b, front, assigner)
	})
}

func benchPipeline(b *testing.B, front, assigner string) {
	rate := *benchRate
	seconds := max(float64(b.N)/rate, 0.1)
	out := b.TempDir()
	b.ResetTimer()
	code := run(context.Background(), []string{
		"-front", front, "-assigner", assigner, "-scenario", "pipeline",
		"-rate", strconv.FormatFloat(rate, 'f', -1, 64), "-players", strconv.Itoa(b.N),
		"-duration", time.Duration((seconds + 1) * float64(time.Second)).String(), "-drain", "30s",
		"-out", out,
	}, io.Discard, io.Discard)
	b.StopTimer()
	r, err := readReport(out + "/report.json")
	if err != nil {
		b.Fatal(err)
	}
	if code != exitPass {
		b.Errorf("the run failed: %s", strings.Join(r.Failures, "; "))
	}
	p := r.Players
	b.ReportMetric(p.AssignedPerS, "assigned/s")
	b.ReportMetric(p.TimeToAssign.P50, "p50-ms")
	b.ReportMetric(p.TimeToAssign.P99, "p99-ms")
	b.ReportMetric(float64(p.Lost), "lost")
}
