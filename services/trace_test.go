package services

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/telemetry"
)

// TestTraceAcrossProcesses follows a ticket's trace from its create at the
// front, through the matcher that matched it and the assigner that placed
// it, in the distributed mode: the trace context travels in the messages'
// headers, and the store's Redis calls are spans of it.
func TestTraceAcrossProcesses(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	telemetry.Use(tp)
	t.Cleanup(func() {
		tp.Shutdown(t.Context())
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
	})

	s := startStack(t, distributed, stackOptions{tracing: true})
	c := newClient(t)
	c.registerServer(s.assignerURL, "gs-t", "eu-west", 2)
	a := c.createTicket(s.frontURL, player("t-1", 1500))
	b := c.createTicket(s.frontURL, player("t-2", 1500))
	for _, id := range []string{a.ID, b.ID} {
		if tk := c.awaitTerminal(s.frontURL, id, 15*time.Second); tk.Status != contracts.StatusAssigned {
			t.Fatalf("ticket %s ended %s", id, tk.Status)
		}
	}

	// Spans by trace; the creates are the POST spans of the front. A
	// process ends its span once its handler returns, which may be after
	// the ticket is assigned: wait for them a little.
	has := func(names []string, prefix string) bool {
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				return true
			}
		}
		return false
	}
	var (
		byTrace map[trace.TraceID][]string
		creates []trace.TraceID
	)
	complete := func() bool {
		byTrace, creates = map[trace.TraceID][]string{}, nil
		for _, sp := range exp.GetSpans() {
			id := sp.SpanContext.TraceID()
			byTrace[id] = append(byTrace[id], sp.Name)
			if sp.Name == "POST /v1/tickets" {
				creates = append(creates, id)
			}
		}
		whole := 0
		for _, id := range creates {
			if has(byTrace[id], "consume tickets.") && has(byTrace[id], "consume matches") {
				whole++
			}
		}
		return len(creates) == 2 && whole > 0
	}
	for deadline := time.Now().Add(5 * time.Second); !complete() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if len(creates) != 2 {
		t.Fatalf("%d create spans, want 2; spans: %v", len(creates), byTrace)
	}
	// The ticket whose message formed the match has it all: the matcher
	// that claimed it and the assigner that placed it continue its trace.
	whole := false
	for _, id := range creates {
		names := byTrace[id]
		if !has(names, "consume tickets.") {
			t.Errorf("trace of a create lacks the matcher's span: %v", names)
		}
		if has(names, "consume matches") && has(names, "evalsha") {
			whole = true
		}
	}
	if !whole {
		t.Errorf("no create's trace reaches the assigner with the store's spans: %v", byTrace)
	}
}
