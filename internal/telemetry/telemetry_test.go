package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestInjectConsume: a message's headers carry the trace of the span that
// published it, and its handling is a child span of that one; with no
// trace, no headers.
func TestInjectConsume(t *testing.T) {
	if h := Inject(context.Background()); h != nil {
		t.Errorf("headers %v without a trace, want none", h)
	}
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	Use(tp)
	ctx, pub := tp.Tracer("test").Start(context.Background(), "publish")
	h := Inject(ctx)
	if h["traceparent"] == "" {
		t.Fatalf("headers %v, want a traceparent", h)
	}
	_, span := Consume(context.Background(), "tickets.duel", h)
	span.End()
	pub.End()
	spans := exp.GetSpans()
	if len(spans) != 2 || spans[0].Name != "consume tickets.duel" ||
		spans[0].Parent.SpanID() != pub.SpanContext().SpanID() || spans[0].SpanContext.TraceID() != pub.SpanContext().TraceID() {
		t.Errorf("spans %+v: want the consume span a child of the publish span", spans)
	}
}

// BenchmarkOff is what a message costs the brokers with tracing off (no
// provider set): Inject on the publish and Consume on the delivery.
func BenchmarkOff(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h := Inject(ctx)
		_, span := Consume(ctx, "tickets.duel", h)
		span.End()
	}
}
