package services

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quickmatch/quickmatch/internal/store"
)

// gauges exports the store's counts (store.Stats) when scraped: tickets
// searching and pooled and matches waiting per queue, servers and free
// slots per region. Matchers and assigners export them; each reading
// costs the store a pass over its indexes and server records, so they are
// read through the process's store.CachingStats.
type gauges struct {
	store   store.StatsReader
	log     *slog.Logger
	queue   *prometheus.Desc
	servers *prometheus.Desc
	slots   *prometheus.Desc
}

func newGauges(st store.StatsReader, log *slog.Logger) *gauges {
	return &gauges{
		store: st, log: log,
		queue: prometheus.NewDesc("mm_queue_tickets", "Tickets and matches of a queue now, by state: searching (in the pool or not yet taken up), pooled, waiting_for_server (matches).",
			[]string{"queue", "state"}, nil),
		servers: prometheus.NewDesc("mm_servers", "Game servers of a region now, by state: registered (records kept), live (heartbeat within the TTL), draining (live and draining).",
			[]string{"region", "state"}, nil),
		slots: prometheus.NewDesc("mm_free_slots", "Free match slots on the live, undrained game servers of a region.",
			[]string{"region"}, nil),
	}
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.queue
	ch <- g.servers
	ch <- g.slots
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	st, ok := g.read()
	if !ok {
		return // no figures rather than wrong ones
	}
	for q, s := range st.Queues {
		ch <- prometheus.MustNewConstMetric(g.queue, prometheus.GaugeValue, float64(s.Searching), q, "searching")
		ch <- prometheus.MustNewConstMetric(g.queue, prometheus.GaugeValue, float64(s.Pooled), q, "pooled")
		ch <- prometheus.MustNewConstMetric(g.queue, prometheus.GaugeValue, float64(s.WaitingForServer), q, "waiting_for_server")
	}
	n := 0
	for r, s := range st.Regions {
		// Regions are as bounded as the registered servers make them;
		// past the cap of the region label they are left out here.
		if n++; n > maxRegionGauges {
			break
		}
		ch <- prometheus.MustNewConstMetric(g.servers, prometheus.GaugeValue, float64(s.Servers), r, "registered")
		ch <- prometheus.MustNewConstMetric(g.servers, prometheus.GaugeValue, float64(s.Live), r, "live")
		ch <- prometheus.MustNewConstMetric(g.servers, prometheus.GaugeValue, float64(s.Draining), r, "draining")
		ch <- prometheus.MustNewConstMetric(g.slots, prometheus.GaugeValue, float64(s.FreeSlots), r)
	}
}

// maxRegionGauges bounds the regions the gauges show, as metrics.Region
// bounds the region label of the counters.
const maxRegionGauges = 64

// read reads the counts, within a bound of its own: a scrape must not hang
// on the store.
func (g *gauges) read() (store.Stats, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := g.store.Stats(ctx, time.Now())
	if err != nil {
		g.log.Warn("reading the store's counts for the gauges", "err", err)
		return store.Stats{}, false
	}
	return st, true
}
