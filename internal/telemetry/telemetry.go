// Package telemetry traces requests and messages across the suite's
// processes with OpenTelemetry: a span per HTTP request, W3C trace context
// in every message's headers so that the matcher's and the assigner's spans
// continue the trace of the ticket they work on, and spans around the
// store's Redis calls.
//
// Tracing is on when the standard OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and exports over OTLP/HTTP;
// the other OTEL_* variables of the SDK apply. Off, nothing is
// instrumented, so it costs nothing. OpenTelemetry's providers are
// process-wide by design; Setup sets them, and tests may set their own.
package telemetry

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Configured reports whether the environment asks for traces to be
// exported.
func Configured() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup starts exporting the spans of service over OTLP, if Configured, and
// returns whether it did and the function that flushes and stops the
// export, to be called at shutdown.
func Setup(ctx context.Context, service string) (on bool, shutdown func(context.Context) error, err error) {
	if !Configured() {
		return false, func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return false, nil, fmt.Errorf("setting up the trace exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return false, nil, fmt.Errorf("describing the service for traces: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	Use(tp)
	return true, tp.Shutdown, nil
}

// Use makes tp the provider of every span and W3C trace context the
// propagation of every message: what Setup does with its exporter, and
// what a test does with one in memory.
func Use(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	on.Store(true)
}

// on is set once Use has been called: until then a message's handling
// starts no span, which would cost every message allocations for nothing.
var on atomic.Bool

// Tracer is the suite's tracer.
func Tracer() trace.Tracer { return otel.Tracer("github.com/quickmatch/quickmatch") }

// Inject returns the trace context of ctx as message headers, nil when ctx
// carries none (tracing off, or no trace started).
func Inject(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	h := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, h)
	if len(h) == 0 {
		return nil
	}
	return h
}

// Consume starts the span of handling a message of queue whose headers
// carried a trace context: a child of the span that published it. The
// caller ends it.
func Consume(ctx context.Context, queue string, headers map[string]string) (context.Context, trace.Span) {
	if !on.Load() {
		return ctx, trace.SpanFromContext(context.Background()) // records nothing; ending it ends nothing
	}
	if len(headers) > 0 {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(headers))
	}
	return Tracer().Start(ctx, "consume "+queue, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.destination.name", queue)))
}
