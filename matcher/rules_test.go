package matcher

import (
	"testing"
	"time"

	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/internal/store"
)

var t0 = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

func TestWindowWidens(t *testing.T) {
	w := queues.Window{Initial: 50, PerSecond: 25, Max: 200}
	tests := []struct {
		waited time.Duration
		want   float64
	}{
		{-time.Second, 50},
		{0, 50},
		{2 * time.Second, 100},
		{6 * time.Second, 200},
		{time.Hour, 200},
	}
	for _, tt := range tests {
		if got := w.At(tt.waited); got != tt.want {
			t.Errorf("At(%v) = %v, want %v", tt.waited, got, tt.want)
		}
	}
}

func TestSharedRegion(t *testing.T) {
	limited := queues.Duel()
	limited.MaxLatencyMS = 100
	open := queues.Duel()
	tests := []struct {
		name   string
		q      queues.Queue
		a, b   map[string]float64
		want   string
		wantOK bool
	}{
		{"neither states latencies: any region", open, nil, nil, "", true},
		{"one states latencies: its best region", open, map[string]float64{"eu": 30, "us": 20}, nil, "us", true},
		{"lowest worst latency wins", open,
			map[string]float64{"eu": 30, "us": 90}, map[string]float64{"eu": 80, "us": 40}, "eu", true},
		{"no region in common", open, map[string]float64{"eu": 30}, map[string]float64{"us": 30}, "", false},
		{"limit excludes a region", limited,
			map[string]float64{"eu": 30, "us": 150}, map[string]float64{"eu": 120, "us": 40}, "", false},
		{"limit keeps the region under it", limited,
			map[string]float64{"eu": 30, "us": 50}, map[string]float64{"eu": 120, "us": 40}, "us", true},
		{"ties go to the first name", open, map[string]float64{"us": 10, "eu": 10}, nil, "eu", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := sharedRegion(&tt.q, tt.a, tt.b)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("sharedRegion = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestBestOpponent(t *testing.T) {
	q := queues.Duel() // window 50, +25/s, max 500
	entry := func(id string, skill float64, waited time.Duration, lat map[string]float64) store.PoolEntry {
		return store.PoolEntry{TicketID: id, Skill: skill, Players: 1, CreatedAt: t0.Add(-waited), Latencies: lat}
	}
	self := entry("self", 1500, 0, nil)
	tests := []struct {
		name    string
		self    store.PoolEntry
		cands   []store.PoolEntry
		exclude map[string]bool
		want    string // "" for none
	}{
		{"nearest skill", self, []store.PoolEntry{entry("a", 1540, 0, nil), entry("b", 1490, 0, nil)}, nil, "b"},
		{"outside the window", self, []store.PoolEntry{entry("a", 1600, 0, nil)}, nil, ""},
		{"the waiting ticket's wider window admits the newcomer", self,
			[]store.PoolEntry{entry("a", 1600, 4*time.Second, nil)}, nil, "a"},
		{"equal gaps go to the longest waiting", self,
			[]store.PoolEntry{entry("new", 1520, time.Second, nil), entry("old", 1480, 3*time.Second, nil)}, nil, "old"},
		{"never itself", self, []store.PoolEntry{self}, nil, ""},
		{"excluded candidates are skipped", self,
			[]store.PoolEntry{entry("a", 1500, 0, nil), entry("b", 1510, 0, nil)}, map[string]bool{"a": true}, "b"},
		{"region must be shared", entry("self", 1500, 0, map[string]float64{"eu": 20}),
			[]store.PoolEntry{entry("us", 1500, 0, map[string]float64{"us": 20}), entry("eu", 1530, 0, map[string]float64{"eu": 40})}, nil, "eu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, ok := bestOpponent(&q, tt.self, tt.cands, tt.exclude, t0)
			if !ok {
				got.TicketID = ""
			}
			if got.TicketID != tt.want {
				t.Errorf("bestOpponent = %q, want %q", got.TicketID, tt.want)
			}
		})
	}
}

func TestPartySkillIsTheMean(t *testing.T) {
	if got := partySkill([]float64{1000, 1200, 1700}); got != 1300 {
		t.Errorf("partySkill = %v, want 1300", got)
	}
	if got := partySkill(nil); got != 0 {
		t.Errorf("partySkill(nil) = %v, want 0", got)
	}
}
