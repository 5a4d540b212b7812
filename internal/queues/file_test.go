package queues

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleQueuesFile(t *testing.T) {
	set, err := LoadFile("../../examples/queues.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ teams, size, minTeams int }{
		"duel":       {2, 1, 2},
		"ranked-2v2": {2, 2, 2},
		"ranked-5v5": {2, 5, 2},
		"brawl":      {16, 1, 8},
	}
	for name, w := range want {
		q, ok := set.Get(name)
		if !ok {
			t.Fatalf("example has no queue %q", name)
		}
		if q.Teams != w.teams || q.TeamSize != w.size || q.MinTeamsPerMatch() != w.minTeams {
			t.Errorf("%s: %d teams of %d (min %d), want %d of %d (min %d)",
				name, q.Teams, q.TeamSize, q.MinTeamsPerMatch(), w.teams, w.size, w.minTeams)
		}
	}
	brawl, _ := set.Get("brawl")
	if brawl.FillWait != 15*time.Second || brawl.Latency.Max != 250 || brawl.RegionWait != 10*time.Second {
		t.Errorf("brawl: fill wait %v, latency max %v, region wait %v", brawl.FillWait, brawl.Latency.Max, brawl.RegionWait)
	}
	if tour, _ := set.Get("tournament-duel"); tour.AcceptTimeout != 15*time.Second {
		t.Errorf("tournament-duel: accept timeout %v, want 15s", tour.AcceptTimeout)
	}
	five, _ := set.Get("ranked-5v5")
	if want := (Window{Initial: 20, PerSecond: 0.25, Max: 200}); five.Balance != want {
		t.Errorf("ranked-5v5: balance %+v, want %+v", five.Balance, want)
	}
}

func TestQueuesFileErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // every fragment must be in the error
	}{
		{"empty", ``, []string{"no queues"}},
		{"no queues", `queues: []`, []string{"no queues"}},
		{"unknown field", "queues:\n  - name: x\n    teams: 2\n    tems: 3\n", []string{"tems"}},
		{"wrong type", "queues:\n  - name: x\n    teams: two\n", []string{"teams"}},
		{"bad duration", "queues:\n  - name: x\n    max_wait: soon\n", []string{`queue "x"`, "soon"}},
		{"missing name", "queues:\n  - teams: 2\n", []string{"queue #1", "no name"}},
		{"bad name", "queues:\n  - name: a/b\n", []string{`queue "a/b"`, "name"}},
		{"one team", "queues:\n  - name: solo\n    teams: 1\n", []string{`queue "solo"`, "teams"}},
		{"team size zero", "queues:\n  - name: x\n    team_size: 0\n", []string{`queue "x"`, "team_size"}},
		{"skill max under initial", "queues:\n  - name: x\n    skill: {initial: 100, per_second: 1, max: 50}\n", []string{`queue "x"`, "skill.max"}},
		{"negative latency", "queues:\n  - name: x\n    latency: {initial: -1, per_second: 0, max: 10}\n", []string{`queue "x"`, "latency.initial"}},
		{"negative balance", "queues:\n  - name: x\n    balance: {initial: -1, per_second: 0, max: 10}\n", []string{`queue "x"`, "balance.initial"}},
		{"balance max under initial", "queues:\n  - name: x\n    balance: {initial: 30, per_second: 1, max: 20}\n", []string{`queue "x"`, "balance.max"}},
		{"balance unknown field", "queues:\n  - name: x\n    balance: {initial: 30, growth: 1}\n", []string{"balance", "growth"}},
		{"negative region wait", "queues:\n  - name: x\n    region_wait: -1s\n", []string{`queue "x"`, "region_wait"}},
		{"region wait not a duration", "queues:\n  - name: x\n    region_wait: 10\n", []string{`queue "x"`, "region_wait"}},
		{"negative accept timeout", "queues:\n  - name: x\n    accept_timeout: -1s\n", []string{`queue "x"`, "accept_timeout"}},
		{"accept timeout too long", "queues:\n  - name: x\n    accept_timeout: 1h\n", []string{`queue "x"`, "accept_timeout"}},
		{"retry past max wait", "queues:\n  - name: x\n    max_wait: 1s\n    retry_delay: 2s\n", []string{`queue "x"`, "retry_delay"}},
		{"ffa min over max", "queues:\n  - name: f\n    free_for_all: {min_players: 9, max_players: 8}\n", []string{`queue "f"`, "min_players"}},
		{"ffa with teams", "queues:\n  - name: f\n    teams: 2\n    free_for_all: {min_players: 2, max_players: 8}\n", []string{`queue "f"`, "free_for_all"}},
		{"duplicate", "queues:\n  - name: x\n  - name: x\n", []string{`"x"`, "twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.file))
			if err == nil {
				t.Fatal("Parse accepted the file")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.yaml")
	if err := os.WriteFile(path, []byte("queues:\n  - name: x\n    teams: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "teams") {
		t.Fatalf("LoadFile error %v, want one naming %s and the field", err, path)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("LoadFile of a missing file succeeded")
	}
}

func TestJSONQueuesFile(t *testing.T) {
	set, err := Parse([]byte(`{"queues": [{"name": "j", "teams": 2, "team_size": 3, "max_wait": "1m"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if q, _ := set.Get("j"); q.TeamSize != 3 || q.MaxWait != time.Minute || q.RegionWait != 0 {
		t.Errorf("JSON queue = %+v", q)
	}
}
