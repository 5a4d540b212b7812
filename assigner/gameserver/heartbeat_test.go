package gameserver

import (
	"net/http"
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

func TestHeartbeatOf(t *testing.T) {
	sent := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC) // Date has whole seconds
	date := func(at time.Time) http.Header { return http.Header{"Date": {at.Format(http.TimeFormat)}} }
	tests := []struct {
		name    string
		every   time.Duration // Config.Heartbeat
		expires time.Time
		header  http.Header
		want    time.Duration
	}{
		{"configured", 2 * time.Second, sent.Add(15 * time.Second), date(sent), 2 * time.Second},
		{"a third of the TTL", 0, sent.Add(15 * time.Second), nil, 5 * time.Second},
		// The server's clock runs 10 s behind the suite's: its Date says
		// the TTL is 15 s, not 25.
		{"a slow clock reads the Date", 0, sent.Add(25 * time.Second), date(sent.Add(10 * time.Second)), 5 * time.Second},
		// Its clock runs ahead: the shorter reading is kept.
		{"a fast clock heartbeats sooner", 0, sent.Add(6 * time.Second), date(sent.Add(-9 * time.Second)), 2 * time.Second},
		{"no expiry shown", 0, time.Time{}, nil, fallbackHeartbeat},
		{"already expired", 0, sent.Add(-time.Second), nil, fallbackHeartbeat},
		{"a tiny TTL", 0, sent.Add(30 * time.Millisecond), nil, minHeartbeat},
		{"a huge TTL", 0, sent.Add(24 * time.Hour), nil, maxHeartbeat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Client{cfg: Config{Heartbeat: tt.every}}
			got := c.heartbeatOf(contracts.Server{ExpiresAt: tt.expires}, tt.header, sent)
			if got != tt.want {
				t.Errorf("heartbeat %v; want %v", got, tt.want)
			}
		})
	}
}
