package sim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/quickmatch/quickmatch/internal/queues"
)

// Config describes one simulated run: the queue, and the players who arrive
// at it.
type Config struct {
	Queue queues.Queue
	// Seed makes the arrival stream: the same seed and config give the
	// same run.
	Seed uint64
	// Rate is the arrival rate in players per second. Tickets (parties)
	// arrive as a Poisson process at Rate divided by the mean party size.
	Rate float64
	// Duration and Count end the arrival stream: no ticket arrives at or
	// after Duration of virtual time, nor once Count players have arrived.
	// Zero leaves that bound off; at least one must be set. The run then
	// goes on until every ticket is matched or expired.
	Duration time.Duration
	Count    int
	// SkillMean and SkillStdDev give the normal distribution of a party's
	// mean skill; each member's skill is drawn around that mean with
	// standard deviation PartyStdDev.
	SkillMean   float64
	SkillStdDev float64
	PartyStdDev float64
	// Parties is the party mix: the share of tickets of each party size.
	// Empty means solos only.
	Parties []PartyShare
	// Regions are the regions players come from, placed on a line in the
	// order given, each the home of its share of the tickets. A ticket's
	// latency is 10–40 ms to its home region and Hop more per step along
	// the line to any other, plus 0–30 ms of noise. Empty means tickets
	// state no latencies, so any region suits every match.
	Regions []RegionShare
	Hop     float64
	// Candidates is passed on to matcher.Config; 0 keeps the matcher's
	// default.
	Candidates int
}

// PartyShare is one entry of the party mix. Shares are weights: they need
// not sum to 1.
type PartyShare struct {
	Size  int     `json:"size"`
	Share float64 `json:"share"`
}

// RegionShare is one region and the weight of players calling it home.
type RegionShare struct {
	Name  string  `json:"name"`
	Share float64 `json:"share"`
}

// Check reports the first setting that makes the run impossible.
func (c *Config) Check() error {
	if err := c.Queue.Validate(); err != nil {
		return err
	}
	switch {
	case !(c.Rate > 0):
		return errors.New("rate must be positive")
	case c.Duration < 0 || c.Count < 0:
		return errors.New("duration and count must not be negative")
	case c.Duration == 0 && c.Count == 0:
		return errors.New("set a duration or a count, or both")
	case c.SkillStdDev < 0 || c.PartyStdDev < 0:
		return errors.New("standard deviations must not be negative")
	case c.Hop < 0:
		return errors.New("hop latency must not be negative")
	case c.Candidates < 0:
		return errors.New("candidates must not be negative")
	}
	for _, p := range c.Parties {
		switch {
		case p.Size < 1:
			return fmt.Errorf("party size %d: must be at least 1", p.Size)
		case p.Size > c.Queue.TeamSize:
			// The front turns such a ticket away with a 400.
			return fmt.Errorf("party size %d: queue %q takes parties of at most %d", p.Size, c.Queue.Name, c.Queue.TeamSize)
		case !(p.Share >= 0):
			return fmt.Errorf("party size %d: share must not be negative", p.Size)
		}
	}
	if len(c.Parties) > 0 && c.partyWeight() == 0 {
		return errors.New("party shares sum to zero")
	}
	for _, r := range c.Regions {
		switch {
		case r.Name == "":
			return errors.New("a region has no name")
		case !(r.Share >= 0):
			return fmt.Errorf("region %s: share must not be negative", r.Name)
		}
	}
	regionWeight := 0.0
	for _, r := range c.Regions {
		regionWeight += r.Share
	}
	if len(c.Regions) > 0 && regionWeight == 0 {
		return errors.New("region shares sum to zero")
	}
	return nil
}

func (c *Config) partyWeight() float64 {
	sum := 0.0
	for _, p := range c.Parties {
		sum += p.Share
	}
	return sum
}

// meanPartySize is the expected players per ticket.
func (c *Config) meanPartySize() float64 {
	if len(c.Parties) == 0 {
		return 1
	}
	sum := 0.0
	for _, p := range c.Parties {
		sum += float64(p.Size) * p.Share
	}
	return sum / c.partyWeight()
}

// ParseParties reads a party mix such as "1:0.6,2:0.2,5:0.2": party sizes
// and the share of tickets of each.
func ParseParties(s string) ([]PartyShare, error) {
	var out []PartyShare
	for _, item := range strings.Split(s, ",") {
		size, weight, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok {
			return nil, fmt.Errorf("party mix item %q: want size:share", item)
		}
		n, err := strconv.Atoi(size)
		if err != nil {
			return nil, fmt.Errorf("party mix item %q: size: %w", item, err)
		}
		w, err := strconv.ParseFloat(weight, 64)
		if err != nil {
			return nil, fmt.Errorf("party mix item %q: share: %w", item, err)
		}
		out = append(out, PartyShare{Size: n, Share: w})
	}
	return out, nil
}

// ParseRegions reads regions such as "eu-west,us-east,ap-south" (equal
// shares) or "eu-west:0.5,us-east:0.3,ap-south:0.2". The empty string is no
// regions.
func ParseRegions(s string) ([]RegionShare, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []RegionShare
	for _, item := range strings.Split(s, ",") {
		name, weight, weighted := strings.Cut(strings.TrimSpace(item), ":")
		r := RegionShare{Name: name, Share: 1}
		if weighted {
			w, err := strconv.ParseFloat(weight, 64)
			if err != nil {
				return nil, fmt.Errorf("region %q: share: %w", name, err)
			}
			r.Share = w
		}
		if name == "" {
			return nil, fmt.Errorf("region item %q has no name", item)
		}
		out = append(out, r)
	}
	return out, nil
}

// FormatParties writes a party mix back in the form ParseParties reads.
func FormatParties(ps []PartyShare) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = strconv.Itoa(p.Size) + ":" + strconv.FormatFloat(p.Share, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}

// FormatRegions writes regions back in the form ParseRegions reads.
func FormatRegions(rs []RegionShare) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Name + ":" + strconv.FormatFloat(r.Share, 'g', -1, 64)
	}
	return strings.Join(parts, ",")
}
