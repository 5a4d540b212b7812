package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// fates are the outcomes a logical create ends in, one each: the fate of
// an outcome line. The other outcomes are stages (attempted, created,
// matched) or arrivals that sent no create (skipped).
var fates = []outcome{
	outAssigned, outCancelled, outExpired, outFailed, outAbandoned, outLost,
	outCreateFailed, outCreateUnanswered,
}

func fateNames() []string {
	out := make([]string, len(fates))
	for i, o := range fates {
		out[i] = outcomeNames[o]
	}
	return out
}

// outcomeLine is one logical create as the load tester concluded it, for
// checks made outside the run against the suite's store: the player ids
// and the ticket id are exactly those sent and answered.
type outcomeLine struct {
	Players []string `json:"players"`
	Ticket  string   `json:"ticket"` // "" when no create try was answered with one
	Fate    string   `json:"fate"`
	Front   string   `json:"front"` // the front of the last create try
	Tries   int      `json:"tries"` // create tries sent
}

func (tk *ticketRun) line(o outcome) outcomeLine {
	l := outcomeLine{Ticket: tk.ticketID, Fate: outcomeNames[o], Front: tk.createFront, Tries: tk.tries}
	for _, pl := range tk.req.Players {
		l.Players = append(l.Players, pl.ID)
	}
	return l
}

// outcomeLog writes outcome lines as the creates end. It is safe for
// concurrent use, and a nil *outcomeLog writes nothing.
type outcomeLog struct {
	mu  sync.Mutex
	f   *os.File
	w   *bufio.Writer
	n   int64
	err error // the first failure; the lines after it are dropped
}

// createOutcomeLog creates (or empties) the file at path, so that a run
// that cannot write it fails before it starts.
func createOutcomeLog(path string) (*outcomeLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-outcomes: %w", err)
	}
	return &outcomeLog{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

func (l *outcomeLog) write(line outcomeLine) {
	if l == nil {
		return
	}
	b, err := json.Marshal(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || l.f == nil {
		return
	}
	if err == nil {
		b = append(b, '\n')
		_, err = l.w.Write(b)
	}
	if err != nil {
		l.err = fmt.Errorf("-outcomes: writing line %d: %w", l.n+1, err)
		return
	}
	l.n++
}

// close flushes and closes the file, and returns the first failure: a
// file missing lines must not pass for a whole one.
func (l *outcomeLog) close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return l.err
	}
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = fmt.Errorf("-outcomes: %w", err)
	}
	if err := l.f.Close(); err != nil && l.err == nil {
		l.err = fmt.Errorf("-outcomes: %w", err)
	}
	l.f = nil
	return l.err
}
