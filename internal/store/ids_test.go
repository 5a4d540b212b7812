package store

import "testing"

func TestQueueOfID(t *testing.T) {
	tests := []struct {
		id, queue string
		ok        bool
	}{
		{NewID("duel"), "duel", true},
		{NewID("ranked.5v5"), "ranked.5v5", true},
		{"no-dot-here", "", false},
		{".leading", "", false},
		{"trailing.", "", false},
	}
	for _, tt := range tests {
		q, ok := QueueOfID(tt.id)
		if q != tt.queue || ok != tt.ok {
			t.Errorf("QueueOfID(%q) = %q, %v; want %q, %v", tt.id, q, ok, tt.queue, tt.ok)
		}
	}
}
