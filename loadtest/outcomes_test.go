package main

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/quickmatch/quickmatch/contracts"
)

func TestOutcomeLine(t *testing.T) {
	req := &contracts.TicketRequest{Players: []contracts.Player{{ID: "r-p1"}, {ID: "r-p2"}}}
	tests := []struct {
		tk   ticketRun
		o    outcome
		want outcomeLine
	}{
		{ticketRun{req: req, tries: 1, createFront: "http://127.0.0.1:8080", ticketID: "t-1"}, outAssigned,
			outcomeLine{Players: []string{"r-p1", "r-p2"}, Ticket: "t-1", Fate: "assigned", Front: "http://127.0.0.1:8080", Tries: 1}},
		{ticketRun{req: req, tries: 8, createFront: "http://127.0.0.1:8090", unanswered: true}, outCreateUnanswered,
			outcomeLine{Players: []string{"r-p1", "r-p2"}, Fate: "create_unanswered", Front: "http://127.0.0.1:8090", Tries: 8}},
		{ticketRun{req: req, tries: 2, createFront: "http://127.0.0.1:8080", ticketID: "t-2"}, outLost,
			outcomeLine{Players: []string{"r-p1", "r-p2"}, Ticket: "t-2", Fate: "lost", Front: "http://127.0.0.1:8080", Tries: 2}},
	}
	for _, tt := range tests {
		if got := tt.tk.line(tt.o); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("line(%s) = %+v, want %+v", outcomeNames[tt.o], got, tt.want)
		}
	}
}

// TestFates: every fate is an outcome's name, and none is a stage.
func TestFates(t *testing.T) {
	names := fateNames()
	for _, want := range []string{"assigned", "cancelled", "expired", "failed", "abandoned", "lost", "create_failed", "create_unanswered"} {
		if !slices.Contains(names, want) {
			t.Errorf("fates %q lack %s", names, want)
		}
	}
	for _, stage := range []string{"attempted", "created", "matched", "skipped"} {
		if slices.Contains(names, stage) {
			t.Errorf("fates %q hold the stage %s", names, stage)
		}
	}
}

// TestOutcomeLog writes lines from many goroutines and reads each back
// whole, once.
func TestOutcomeLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "outcomes.jsonl")
	l, err := createOutcomeLog(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l.write(outcomeLine{Players: []string{fmt.Sprintf("r-p%d", i)}, Fate: "assigned", Tries: 1})
		})
	}
	wg.Wait()
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	l.write(outcomeLine{Players: []string{"late"}}) // dropped, not a panic
	lines := readOutcomes(t, path)
	if len(lines) != n {
		t.Errorf("%d lines read back, want %d", len(lines), n)
	}
	var none *outcomeLog
	none.write(outcomeLine{})
	if err := none.close(); err != nil {
		t.Errorf("closing no log: %v", err)
	}
}

func TestOutcomeLogFailures(t *testing.T) {
	if _, err := createOutcomeLog(filepath.Join(t.TempDir(), "missing", "o.jsonl")); err == nil || !strings.Contains(err.Error(), "-outcomes") {
		t.Errorf("creating in a missing directory: %v, want an -outcomes error", err)
	}
	// Writes to /dev/full fail as on a full disk.
	l, err := createOutcomeLog("/dev/full")
	if err != nil {
		t.Skipf("no /dev/full to write: %v", err)
	}
	for range 2000 { // past the buffer, so that a write fails too
		l.write(outcomeLine{Players: []string{"r-p1"}, Fate: "assigned"})
	}
	if err := l.close(); err == nil {
		t.Error("a log on a full device closed without an error")
	}
}
