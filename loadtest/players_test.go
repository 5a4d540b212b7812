package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	tests := []struct {
		rate    float64
		elapsed time.Duration
		want    int64
	}{
		{2000, 0, 0},
		{2000, -time.Second, 0},
		{2000, time.Millisecond, 2},
		{2000, 1500 * time.Millisecond, 3000},
		{0.5, 3 * time.Second, 1},
	}
	for _, tt := range tests {
		if got := due(tt.rate, tt.elapsed); got != tt.want {
			t.Errorf("due(%v, %v) = %d, want %d", tt.rate, tt.elapsed, got, tt.want)
		}
	}
}

func TestArrivalTimeInvertsDue(t *testing.T) {
	start := time.Unix(1000, 0)
	for _, rate := range []float64{1, 7, 2000, 25000} {
		for _, n := range []int64{0, 1, 999, 123456} {
			at := arrivalTime(start, rate, n)
			// Player n has arrived at its own time, not before.
			if got := due(rate, at.Sub(start)+time.Nanosecond); got < n {
				t.Errorf("rate %v: player %d arrives at %v, but due then is %d", rate, n, at.Sub(start), got)
			}
		}
	}
}

func TestTicketMaker(t *testing.T) {
	c := Config{
		Queue: "duel", SkillMean: 1500, SkillStddev: 200, Jitter: 10, RunID: "run",
		Regions: []Region{{"eu-west", 30}, {"us-east", 110}},
		Party:   []PartyShare{{1, 3}, {2, 1}},
	}
	m := newTicketMaker(&c, 42)
	const n = 20000
	var sum, sumSq float64
	players := 0
	sizes := map[int]int{}
	ids := map[string]bool{}
	for range n {
		req := m.Next()
		if req.Queue != "duel" {
			t.Fatalf("queue %q", req.Queue)
		}
		sizes[len(req.Players)]++
		for _, p := range req.Players {
			if ids[p.ID] || !strings.HasPrefix(p.ID, "run-p") {
				t.Fatalf("player id %q repeated or without the run's prefix", p.ID)
			}
			ids[p.ID] = true
			sum += p.Skill
			sumSq += p.Skill * p.Skill
			players++
		}
		if eu := req.Latencies["eu-west"]; eu < 20 || eu > 40 {
			t.Fatalf("eu-west latency %v outside 30 ± 10", eu)
		}
		if us := req.Latencies["us-east"]; us < 100 || us > 120 {
			t.Fatalf("us-east latency %v outside 110 ± 10", us)
		}
	}
	mean := sum / float64(players)
	stddev := math.Sqrt(sumSq/float64(players) - mean*mean)
	if math.Abs(mean-1500) > 10 || math.Abs(stddev-200) > 10 {
		t.Errorf("skill mean %.1f stddev %.1f, want about 1500 and 200", mean, stddev)
	}
	if solo := float64(sizes[1]) / n; math.Abs(solo-0.75) > 0.02 || sizes[1]+sizes[2] != n {
		t.Errorf("party sizes %v: want about 3 solos to 1 pair", sizes)
	}
	if solo := m.NextSolo(); len(solo.Players) != 1 {
		t.Errorf("NextSolo made a party of %d", len(solo.Players))
	}
}

func TestTicketMakerWithoutRegions(t *testing.T) {
	c := Config{Queue: "duel", SkillMean: 1500, Party: []PartyShare{{1, 1}}, RunID: "r"}
	req := newTicketMaker(&c, 1).Next()
	if req.Latencies != nil {
		t.Errorf("latencies %v, want none", req.Latencies)
	}
	if req.Players[0].Skill != 1500 {
		t.Errorf("skill %v with no spread, want 1500", req.Players[0].Skill)
	}
}
