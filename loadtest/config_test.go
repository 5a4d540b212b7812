package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCheckTarget(t *testing.T) {
	tests := []struct {
		url    string
		remote bool
		ok     bool
	}{
		{"http://127.0.0.1:8080", false, true},
		{"http://127.0.0.9:8080/", false, true},
		{"http://localhost:8080", false, true},
		{"http://[::1]:8080", false, true},
		{"https://127.0.0.1", false, true},
		{"http://10.0.0.7:8080", false, false},
		{"http://example.com", false, false},
		{"http://0.0.0.0:8080", false, false},
		{"http://10.0.0.7:8080", true, true},
		{"http://example.com", true, true},
		{"ftp://127.0.0.1", false, false},
		{"http://127.0.0.1:8080/v1", false, false},
		{"http://127.0.0.1:8080?x=1", false, false},
		{"127.0.0.1:8080", false, false},
		{"http://", false, false},
	}
	for _, tt := range tests {
		err := checkTarget("-front", tt.url, tt.remote)
		if (err == nil) != tt.ok {
			t.Errorf("checkTarget(%q, remote=%v) = %v, want ok=%v", tt.url, tt.remote, err, tt.ok)
		}
	}
}

func TestParseRegions(t *testing.T) {
	tests := []struct {
		in   string
		want []Region
		err  bool
	}{
		{"eu-west=30,us-east=110", []Region{{"eu-west", 30}, {"us-east", 110}}, false},
		{" eu-west=0.5 ", []Region{{"eu-west", 0.5}}, false},
		{"", nil, false},
		{"eu-west", nil, true},
		{"=30", nil, true},
		{"eu-west=-1", nil, true},
		{"eu-west=60001", nil, true},
		{"eu-west=x", nil, true},
		{"eu-west=1,eu-west=2", nil, true},
	}
	for _, tt := range tests {
		got, err := parseRegions(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("parseRegions(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && !slices.Equal(got, tt.want) {
			t.Errorf("parseRegions(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParsePartyMix(t *testing.T) {
	tests := []struct {
		in   string
		want []PartyShare
		err  bool
	}{
		{"1=1", []PartyShare{{1, 1}}, false},
		{"1=0.8,2=0.2", []PartyShare{{1, 0.8}, {2, 0.2}}, false},
		{"1=0,5=3", []PartyShare{{1, 0}, {5, 3}}, false},
		{"", nil, true},
		{"1=0", nil, true},
		{"0=1", nil, true},
		{"101=1", nil, true},
		{"1=-1", nil, true},
		{"1", nil, true},
		{"1=1,1=2", nil, true},
		{"1=NaN", nil, true},
	}
	for _, tt := range tests {
		got, err := parsePartyMix(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("parsePartyMix(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && !slices.Equal(got, tt.want) {
			t.Errorf("parsePartyMix(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParsePIDs(t *testing.T) {
	got, err := parsePIDs("front=12, matcher=34")
	if err != nil || !slices.Equal(got, []PID{{"front", 12}, {"matcher", 34}}) {
		t.Errorf("parsePIDs = %v, %v", got, err)
	}
	for _, bad := range []string{"front", "front=x", "=12", "front=0", "front=-3"} {
		if _, err := parsePIDs(bad); err == nil {
			t.Errorf("parsePIDs(%q) accepted", bad)
		}
	}
}

func TestPipelinePreset(t *testing.T) {
	c, err := parseConfig([]string{"-scenario", "pipeline", "-rate", "2000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SkillStddev != 0 || len(c.Regions) != 1 || c.Jitter != 0 || c.Servers != 0 ||
		c.GameLength != 0 || c.MaxUnassigned != 0 || c.ServerCapacity != 10000 {
		t.Errorf("pipeline preset not applied: %+v", c)
	}
	if len(c.ServerRegions) != 1 || c.ServerRegions[0] != c.Regions[0].Name {
		t.Errorf("servers in %v, players in %v: want the one region", c.ServerRegions, c.Regions)
	}
	if c.Assigner != c.Front {
		t.Errorf("assigner %q, want the front %q by default", c.Assigner, c.Front)
	}

	// A flag given explicitly wins over the preset.
	c, err = parseConfig([]string{"-scenario", "pipeline", "-skill-stddev", "50", "-servers", "3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.SkillStddev != 50 || c.Servers != 3 {
		t.Errorf("explicit flags overridden by the preset: stddev %v, servers %d", c.SkillStddev, c.Servers)
	}
}

func TestParseConfigRejects(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-mode", "bogus"}, "unknown -mode"},
		{[]string{"-scenario", "bogus"}, "unknown -scenario"},
		{[]string{"-rate", "0"}, "-rate"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-front", "http://192.0.2.1:8080"}, "not a loopback"},
		{[]string{"-front", "http://127.0.0.1:8080,http://192.0.2.1:8080"}, "192.0.2.1 is not a loopback"},
		{[]string{"-front", " , "}, "at least one"},
		{[]string{"-front", "http://127.0.0.1:8080,http://127.0.0.1:8080/"}, "appears twice"},
		{[]string{"-front", strings.Repeat("http://127.0.0.1:1,", maxFronts+1)}, "more than"},
		{[]string{"-mode", "hold", "-front", "http://127.0.0.1:8080,http://127.0.0.1:8081"}, "loads one front"},
		{[]string{"-mode", "http", "-front", "http://127.0.0.1:8080,http://127.0.0.1:8081"}, "loads one front"},
		{[]string{"-mode", "http", "-outcomes", "x"}, "-outcomes needs -mode players"},
		{[]string{"-assigner", "http://example.com"}, "not a loopback"},
		{[]string{"-server-capacity", "0"}, "-server-capacity"},
		{[]string{"-poll-until", "searching"}, "-poll-until"},
		{[]string{"-mode", "hold", "-wake", "sigterm"}, "-front-pid"},
		{[]string{"-mode", "hold", "-hold", "0"}, "-hold"},
		{[]string{"-mode", "table"}, "-in"},
		{[]string{"stray"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseConfig(%q) = %v, want an error mentioning %q", tt.args, err, tt.want)
		}
	}
}

func TestParseFronts(t *testing.T) {
	tests := []struct {
		args     []string
		fronts   []string
		assigner string
	}{
		{nil, []string{"http://127.0.0.1:8080"}, "http://127.0.0.1:8080"},
		{[]string{"-front", "http://127.0.0.1:9000/"}, []string{"http://127.0.0.1:9000"}, "http://127.0.0.1:9000"},
		{[]string{"-front", "http://127.0.0.1:8080, http://localhost:8090,"},
			[]string{"http://127.0.0.1:8080", "http://localhost:8090"}, "http://127.0.0.1:8080"},
		{[]string{"-front", "http://127.0.0.1:8080,http://127.0.0.2:8080", "-assigner", "http://127.0.0.1:8081"},
			[]string{"http://127.0.0.1:8080", "http://127.0.0.2:8080"}, "http://127.0.0.1:8081"},
		{[]string{"-front", "http://127.0.0.1:8080,http://10.0.0.7:8080", "-allow-remote"},
			[]string{"http://127.0.0.1:8080", "http://10.0.0.7:8080"}, "http://127.0.0.1:8080"},
	}
	for _, tt := range tests {
		c, err := parseConfig(tt.args, io.Discard)
		if err != nil {
			t.Errorf("parseConfig(%q): %v", tt.args, err)
			continue
		}
		if !slices.Equal(c.Fronts, tt.fronts) || c.Front != tt.fronts[0] || c.Assigner != tt.assigner {
			t.Errorf("parseConfig(%q): fronts %q, front %q, assigner %q; want %q, the first, %q",
				tt.args, c.Fronts, c.Front, c.Assigner, tt.fronts, tt.assigner)
		}
	}
}

func TestAutoFleet(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want int
	}{
		{"explicit", Config{Servers: 7}, 7},
		// 40,000 players, 20,000 matches, 25,000 slots with the spare.
		{"held to the end", Config{Rate: 2000, Duration: 20 * time.Second, MatchSize: 2, ServerCapacity: 10000}, 3},
		{"player budget", Config{Rate: 2000, Duration: 20 * time.Second, Players: 100, MatchSize: 2, ServerCapacity: 10000}, 1},
		// 100/s for 12 s alive at once: 600 matches, 750 slots.
		{"games end", Config{Rate: 100, Duration: time.Hour, GameLength: 10 * time.Second, MatchSize: 2, ServerCapacity: 16}, 47},
		{"bounded", Config{Rate: 1e6, Duration: time.Hour, MatchSize: 2, ServerCapacity: 1}, maxFleet},
	}
	for _, tt := range tests {
		if got := autoFleet(&tt.c); got != tt.want {
			t.Errorf("%s: autoFleet = %d, want %d", tt.name, got, tt.want)
		}
	}
}
