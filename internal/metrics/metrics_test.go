package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRegionLabelBounded: however many regions matches name, the region
// label takes at most MaxRegionLabels values and OtherRegion.
func TestRegionLabelBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	for i := range 1000 {
		m.MatchesFormed.WithLabelValues("duel", m.Region(fmt.Sprintf("made-up-%d", i))).Inc()
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, f := range families {
		if f.GetName() == "mm_matches_formed_total" {
			got = len(f.GetMetric())
		}
	}
	if want := MaxRegionLabels + 1; got != want {
		t.Errorf("1,000 regions made %d series, want %d", got, want)
	}
	if got := m.Region("made-up-3"); got != "made-up-3" {
		t.Errorf("a region seen early is labelled %q, want itself", got)
	}
	if got := m.Region("made-up-999"); got != OtherRegion {
		t.Errorf("a region past the bound is labelled %q, want %q", got, OtherRegion)
	}
}
