package dashboard

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// CounterByLabel reads counter c (a CounterVec) as totals by the value of
// its label: the process's own mm_matches_formed_total by queue, for the
// matches per second of a process that runs a matcher.
func CounterByLabel(c prometheus.Collector, label string) func() map[string]float64 {
	return func() map[string]float64 {
		ch := make(chan prometheus.Metric)
		go func() {
			c.Collect(ch)
			close(ch)
		}()
		out := map[string]float64{}
		for m := range ch {
			var pb dto.Metric
			if m.Write(&pb) != nil || pb.Counter == nil {
				continue
			}
			for _, l := range pb.Label {
				if l.GetName() == label {
					out[l.GetValue()] += pb.Counter.GetValue()
				}
			}
		}
		return out
	}
}
