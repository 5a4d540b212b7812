package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/quickmatch/quickmatch/contracts"
)

// arrivals draws the seeded stream of tickets. Every draw happens in a fixed
// order, so a seed gives the same tickets whatever the matcher does.
type arrivals struct {
	cfg        *Config
	rng        *rand.Rand
	ticketRate float64 // tickets per second
	tickets    int
	players    int
}

func newArrivals(cfg *Config) *arrivals {
	return &arrivals{
		cfg: cfg,
		// The second word only needs to differ from the first; any
		// fixed odd constant does.
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		ticketRate: cfg.Rate / cfg.meanPartySize(),
	}
}

// gap is the time to the next arrival of a Poisson process.
func (a *arrivals) gap() time.Duration {
	return time.Duration(a.rng.ExpFloat64() / a.ticketRate * float64(time.Second))
}

// more reports whether a ticket may still arrive at virtual time at.
func (a *arrivals) more(at time.Duration) bool {
	if a.cfg.Duration > 0 && at >= a.cfg.Duration {
		return false
	}
	return a.cfg.Count == 0 || a.players < a.cfg.Count
}

// next draws the ticket that arrives at created, and its home region ("" if
// the run has no regions).
func (a *arrivals) next(created time.Time) (contracts.Ticket, string) {
	size := a.partySize()
	if a.cfg.Count > 0 {
		// The last party is cut to the count rather than overshoot it.
		size = min(size, a.cfg.Count-a.players)
	}
	mean := a.cfg.SkillMean + a.cfg.SkillStdDev*a.rng.NormFloat64()
	players := make([]contracts.Player, size)
	for i := range players {
		a.players++
		skill := mean
		if size > 1 {
			skill += a.cfg.PartyStdDev * a.rng.NormFloat64()
		}
		players[i] = contracts.Player{ID: fmt.Sprintf("p-%07d", a.players), Skill: math.Round(skill)}
	}
	a.tickets++
	t := contracts.Ticket{
		ID:        fmt.Sprintf("t-%07d", a.tickets),
		Queue:     a.cfg.Queue.Name,
		Status:    contracts.StatusSearching,
		Version:   1,
		CreatedAt: created,
		UpdatedAt: created,
		Players:   players,
	}
	home := ""
	if len(a.cfg.Regions) > 0 {
		h := a.pick(len(a.cfg.Regions), func(i int) float64 { return a.cfg.Regions[i].Share })
		home = a.cfg.Regions[h].Name
		base := 10 + 30*a.rng.Float64()
		t.Latencies = make(map[string]float64, len(a.cfg.Regions))
		for i, r := range a.cfg.Regions {
			ms := base
			if i != h {
				steps := math.Abs(float64(i - h))
				ms += a.cfg.Hop*steps + 30*a.rng.Float64()
			}
			t.Latencies[r.Name] = math.Round(ms)
		}
	}
	return t, home
}

func (a *arrivals) partySize() int {
	if len(a.cfg.Parties) == 0 {
		return 1
	}
	return a.cfg.Parties[a.pick(len(a.cfg.Parties), func(i int) float64 { return a.cfg.Parties[i].Share })].Size
}

// pick draws an index in [0, n) with probability proportional to weight.
func (a *arrivals) pick(n int, weight func(int) float64) int {
	total := 0.0
	for i := range n {
		total += weight(i)
	}
	x := a.rng.Float64() * total
	for i := range n {
		if x < weight(i) {
			return i
		}
		x -= weight(i)
	}
	// Rounding can leave x at the very top: take the last weighted entry.
	for i := n - 1; i > 0; i-- {
		if weight(i) > 0 {
			return i
		}
	}
	return 0
}
