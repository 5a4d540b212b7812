package sim

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
)

// Report is what a run says about match quality. Waits are in seconds of
// virtual time; skills are in the units of the players' skill.
type Report struct {
	Queue    string  `json:"queue"`
	Shape    string  `json:"shape"`
	Seed     uint64  `json:"seed"`
	Rate     float64 `json:"rate_players_per_s"`
	Duration string  `json:"duration"`
	Count    int     `json:"count,omitempty"`
	Skill    string  `json:"skill"`
	Parties  string  `json:"parties"`
	Regions  string  `json:"regions"`

	TicketsIn      int     `json:"tickets_in"`
	PlayersIn      int     `json:"players_in"`
	Matches        int     `json:"matches"`
	PlayersPerGame float64 `json:"players_per_match"`
	TicketsMatched int     `json:"tickets_matched"`
	PlayersMatched int     `json:"players_matched"`
	TicketsExpired int     `json:"tickets_expired"`
	PlayersExpired int     `json:"players_expired"`
	// Late counts matched tickets that had searched longer than the
	// queue's max wait when their match formed.
	Late int `json:"late"`
	// Deliveries is the mean number of times the matcher handled a
	// ticket's message.
	Deliveries float64 `json:"deliveries_per_ticket"`

	// Wait is over matched players, each waiting as long as their ticket.
	Wait Quantiles `json:"wait_s"`
	// WaitByDecile splits all players into ten equal bands of skill.
	WaitByDecile []Decile `json:"wait_by_skill_decile"`

	// Spread is highest minus lowest party skill in a match: what the
	// skill window bounds.
	Spread Summary `json:"skill_spread"`
	// WindowUse is a match's spread as a share of the skill window of its
	// longest-waiting ticket when it formed.
	WindowUse Summary `json:"window_use"`
	// Imbalance is the gap between the highest and the lowest team total
	// of player skill; nil for a free-for-all. MatchingImbalance is the
	// same gap in the skill the matcher balances by, where each player
	// counts at their party's matching skill.
	Imbalance         *Summary `json:"team_imbalance,omitempty"`
	MatchingImbalance *Summary `json:"team_imbalance_matching_skill,omitempty"`
	// Gap compares the run's total spread with the best split of the
	// same matched parties into the same number of matches.
	Gap Gap `json:"skill_gap"`
	// PlayerGap does the same with each player's own skill (max − min
	// player skill in a match) rather than party skills.
	PlayerGap Gap `json:"player_skill_gap"`

	// AwayFromHome is the share of matched players (of tickets stating
	// latencies) whose match is not in their home region; Latency is
	// their latency to the match's region.
	AwayFromHome float64 `json:"away_from_home"`
	Latency      Summary `json:"latency_ms"`
	// BestRegion is the share of the same players whose match is in a
	// region of their lowest latency.
	BestRegion float64 `json:"best_region_share"`

	// ArrivalGap compares the run's total spread with the best grouping
	// of the same tickets in which a match's tickets were all searching
	// at one moment (see arrivalGap).
	ArrivalGap ArrivalGap `json:"arrival_gap"`
	// Balance is each team match's expected score; nil for a
	// free-for-all.
	Balance *Balance `json:"balance,omitempty"`
	// Figures are the headline numbers under the names the sweep uses.
	Figures Figures `json:"figures"`
}

// ArrivalGap is the run's total skill spread against the arrival-aware
// reference: the same matched tickets in the same number of matches, each
// ticket searching from its arrival until its match formed, as it did in
// the run, and a match holding only tickets that were searching at one
// moment. The run's own matches keep that rule, so Ratio = Run /
// Reference is at least 1 (0 when Reference is 0). For 1v1 Reference is
// the optimum when Exact (a minimum-cost pairing; see minPairGap),
// otherwise, and always for teams and free-for-all, a lower bound (see
// groupGapBound), so Ratio is then an upper bound on the true ratio.
type ArrivalGap struct {
	Run       float64 `json:"run"`
	Reference float64 `json:"reference"`
	Ratio     float64 `json:"ratio"`
	Exact     bool    `json:"exact"`
	// Method says how Reference was found.
	Method string `json:"method"`
}

// Balance is how fair the team matches were, as Elo predicts them: team
// A's expected score 1/(1+10^((B−A)/400)), where a team's skill is the mean
// of its players' own skills. A match is within 3 % when that score is in
// 50 ± 3 % (team means at most about 20.9 apart).
type Balance struct {
	Matches    int     `json:"matches"`
	Within3pct float64 `json:"within_3pct"`
	// WithParties are the matches holding a party of two or more,
	// WithoutParties the others.
	WithParties    BalanceShare `json:"with_parties"`
	WithoutParties BalanceShare `json:"without_parties"`
	// Stacks are the matches holding a party as large as a team;
	// StackVsStack those of them with a second one.
	Stacks       int `json:"stacks"`
	StackVsStack int `json:"stack_vs_stack"`
	// MatchingWithin3pct is Within3pct with every player at their
	// party's matching skill (mean + party_spread × range).
	MatchingWithin3pct float64 `json:"matching_skill_within_3pct"`
	// Score summarises |expected score − 50 %|, in percentage points.
	Score Summary `json:"score_off_even_pct"`
}

// BalanceShare counts the matches of one kind and the share within 3 %.
type BalanceShare struct {
	Matches    int     `json:"matches"`
	Within3pct float64 `json:"within_3pct"`
}

// Figures are the run's headline numbers.
type Figures struct {
	WaitP50         float64 `json:"wait_p50_s"`
	WaitP90         float64 `json:"wait_p90_s"`
	MeanSpread      float64 `json:"mean_spread"`
	ReferenceSpread float64 `json:"reference_spread"` // the arrival-aware reference's mean per match
	Ratio           float64 `json:"ratio"`            // ArrivalGap.Ratio
	// BalanceWithin3pct is Balance.Within3pct; absent for a free-for-all.
	BalanceWithin3pct *float64 `json:"balance_within_3pct,omitempty"`
	// BestRegionShare is absent when no ticket states latencies.
	BestRegionShare *float64 `json:"best_region_share,omitempty"`
	// BandWaitRatioMax is the highest skill decile's median wait over
	// the median wait of all matched players; null when that median is
	// zero and some decile's is not (the ratio is then unbounded).
	BandWaitRatioMax *float64 `json:"band_wait_ratio_max"`
}

// Quantiles are the 50th, 90th and 99th percentiles (nearest rank).
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// Summary is the mean, 90th percentile and highest of a measure.
type Summary struct {
	Mean float64 `json:"mean"`
	P90  float64 `json:"p90"`
	Max  float64 `json:"max"`
}

// Decile is one tenth of the players by skill.
type Decile struct {
	Lo      float64   `json:"skill_lo"`
	Median  float64   `json:"skill_median"`
	Hi      float64   `json:"skill_hi"`
	Players int       `json:"players"`
	Matched int       `json:"matched"`
	Wait    Quantiles `json:"wait_s"`
}

// Gap is the run's total skill spread against the offline optimum for the
// same players, or a lower bound on it (see MinSpreadSum). Ratio is Run /
// Optimum, at least 1; 0 when the optimum is 0.
type Gap struct {
	Run     float64 `json:"run"`
	Optimum float64 `json:"optimum"`
	Ratio   float64 `json:"ratio"`
	// Exact says Optimum is the optimum itself, not a lower bound.
	Exact bool `json:"exact"`
}

// freeForAll reports whether q's teams are single players rather than
// sides: more than two of them, or a minimum count.
func freeForAll(q *queues.Queue) bool { return q.TeamSize == 1 && (q.Teams > 2 || q.MinTeams != 0) }

// Report measures the run.
func (r *Result) Report() (*Report, error) {
	cfg := &r.Config
	q := &cfg.Queue
	ffa := freeForAll(q)
	rep := &Report{
		Queue:    q.Name,
		Seed:     cfg.Seed,
		Rate:     cfg.Rate,
		Duration: cfg.Duration.String(),
		Count:    cfg.Count,
		Skill:    fmt.Sprintf("normal(%g, %g), party members ±%g", cfg.SkillMean, cfg.SkillStdDev, cfg.PartyStdDev),
		Parties:  FormatParties(cfg.Parties),
		Regions:  FormatRegions(cfg.Regions),
	}
	switch {
	case ffa:
		rep.Shape = fmt.Sprintf("free-for-all of %d to %d", q.MinTeamsPerMatch(), q.Teams)
	default:
		rep.Shape = fmt.Sprintf("%d teams of %d", q.Teams, q.TeamSize)
	}
	if rep.Parties == "" {
		rep.Parties = "1:1"
	}

	// Tickets and players.
	type playerWait struct {
		skill   float64
		matched bool
		wait    float64
	}
	var (
		players     []playerWait
		waits       []float64
		deliveries  int
		stated      int
		away        int
		best        int
		latencies   []float64
		skillOf     = map[string]float64{}
		partyOf     = map[string]float64{} // player → party's matching skill
		partySkills []float64              // one copy per player of the party's skill
		playerSkill []float64
	)
	for i := range r.Tickets {
		t := &r.Tickets[i]
		rep.TicketsIn++
		rep.PlayersIn += len(t.Players)
		deliveries += t.Deliveries
		matched := t.Status == contracts.StatusMatched
		wait := t.Wait().Seconds()
		switch t.Status {
		case contracts.StatusMatched:
			rep.TicketsMatched++
			rep.PlayersMatched += len(t.Players)
			if t.Wait() > q.MaxWait {
				rep.Late++
			}
		case contracts.StatusExpired:
			rep.TicketsExpired++
			rep.PlayersExpired += len(t.Players)
		}
		for _, p := range t.Players {
			skillOf[p.ID] = p.Skill
			partyOf[p.ID] = t.Skill
			players = append(players, playerWait{skill: p.Skill, matched: matched, wait: wait})
			if !matched {
				continue
			}
			waits = append(waits, wait)
			partySkills = append(partySkills, t.Skill)
			playerSkill = append(playerSkill, p.Skill)
			if len(t.Latencies) > 0 {
				stated++
				region := r.Matches[t.Match].Region
				if region != t.Home {
					away++
				}
				if ms, ok := t.Latencies[region]; ok && ms <= queues.BestLatency(t.Latencies) {
					best++
				}
				latencies = append(latencies, t.Latencies[region])
			}
		}
	}
	if rep.TicketsIn > 0 {
		rep.Deliveries = float64(deliveries) / float64(rep.TicketsIn)
	}
	if stated > 0 {
		rep.AwayFromHome = float64(away) / float64(stated)
		rep.BestRegion = float64(best) / float64(stated)
	}
	rep.Latency = summarize(latencies)
	rep.Wait = quantiles(waits)

	slices.SortStableFunc(players, func(a, b playerWait) int { return cmp.Compare(a.skill, b.skill) })
	for d := range 10 {
		band := players[d*len(players)/10 : (d+1)*len(players)/10]
		if len(band) == 0 {
			continue
		}
		dec := Decile{Lo: band[0].skill, Median: band[len(band)/2].skill, Hi: band[len(band)-1].skill, Players: len(band)}
		var w []float64
		for _, p := range band {
			if p.matched {
				dec.Matched++
				w = append(w, p.wait)
			}
		}
		dec.Wait = quantiles(w)
		rep.WaitByDecile = append(rep.WaitByDecile, dec)
	}

	// Matches.
	var spreads, uses, imbalances, matchingImbalances []float64
	playerRun := 0.0
	for _, m := range r.Matches {
		lo, hi := math.Inf(1), math.Inf(-1)
		oldest := m.CreatedAt
		for _, id := range m.TicketIDs {
			t, ok := r.Ticket(id)
			if !ok {
				return nil, fmt.Errorf("match %s lists unknown ticket %s", m.ID, id)
			}
			lo, hi = min(lo, t.Skill), max(hi, t.Skill)
			if t.CreatedAt.Before(oldest) {
				oldest = t.CreatedAt
			}
		}
		spreads = append(spreads, hi-lo)
		if window := q.Skill.At(m.CreatedAt.Sub(oldest)); window > 0 {
			uses = append(uses, (hi-lo)/window)
		}
		plo, phi := math.Inf(1), math.Inf(-1)
		for _, p := range m.Players {
			plo, phi = min(plo, p.Skill), max(phi, p.Skill)
		}
		playerRun += phi - plo
		if !ffa {
			totals := make([]float64, len(m.Teams))
			matching := make([]float64, len(m.Teams))
			for i, team := range m.Teams {
				for _, id := range team {
					totals[i] += skillOf[id]
					matching[i] += partyOf[id]
				}
			}
			imbalances = append(imbalances, slices.Max(totals)-slices.Min(totals))
			matchingImbalances = append(matchingImbalances, slices.Max(matching)-slices.Min(matching))
		}
	}
	rep.Matches = len(r.Matches)
	if rep.Matches > 0 {
		rep.PlayersPerGame = float64(rep.PlayersMatched) / float64(rep.Matches)
	}
	rep.Spread = summarize(spreads)
	rep.WindowUse = summarize(uses)
	if !ffa {
		s, ms := summarize(imbalances), summarize(matchingImbalances)
		rep.Imbalance, rep.MatchingImbalance = &s, &ms
	}

	// The offline optimum: the same players in the same number of
	// matches of the sizes the queue allows. Each player stands for a
	// copy of their party's skill, so any split of the parties into
	// matches is a split of the copies with the same total spread; the
	// bound over copies is a bound over parties too, and exact when every
	// party is a solo and every match has one size.
	minSize, maxSize := q.PlayersPerMatch(), q.PlayersPerMatch()
	if ffa {
		minSize = q.MinTeamsPerMatch()
	}
	allSolo := rep.TicketsMatched == rep.PlayersMatched
	var err error
	rep.Gap, err = gap(sum(spreads), partySkills, rep.Matches, minSize, maxSize, allSolo && minSize == maxSize)
	if err != nil {
		return nil, fmt.Errorf("bounding the party skill gap: %w", err)
	}
	rep.PlayerGap, err = gap(playerRun, playerSkill, rep.Matches, minSize, maxSize, allSolo && minSize == maxSize)
	if err != nil {
		return nil, fmt.Errorf("bounding the player skill gap: %w", err)
	}
	rep.ArrivalGap, err = r.arrivalGap(sum(spreads), minSize, maxSize)
	if err != nil {
		return nil, fmt.Errorf("the arrival-aware reference: %w", err)
	}
	if !ffa {
		rep.Balance = r.balance(skillOf, partyOf)
	}
	rep.figures(stated > 0)
	return rep, nil
}

// arrivalGap measures the run against the arrival-aware reference.
func (r *Result) arrivalGap(run float64, minSize, maxSize int) (ArrivalGap, error) {
	var ts []searcher
	for i := range r.Tickets {
		t := &r.Tickets[i]
		if t.Status != contracts.StatusMatched {
			continue
		}
		ts = append(ts, searcher{from: t.CreatedAt.Sub(Epoch), to: t.Ended.Sub(Epoch), skill: t.Skill, players: len(t.Players)})
	}
	g := ArrivalGap{Run: run}
	if maxSize == 2 && minSize == 2 {
		pg, err := minPairGap(ts, meetingArcs(ts))
		if err != nil {
			return g, err
		}
		g.Reference, g.Exact = pg.Value, pg.Exact
		g.Method = "minimum-cost pairing (exact)"
		if !pg.Exact {
			g.Method = fmt.Sprintf("assignment relaxation with %d odd cycles (lower bound)", pg.OddCycles)
		}
	} else {
		g.Reference = groupGapBound(ts, len(r.Matches), minSize, maxSize)
		g.Method = "each ticket's narrowest group (lower bound)"
	}
	if g.Reference > 0 {
		g.Ratio = run / g.Reference
	}
	return g, nil
}

// expectedScore is Elo's expected score of a team of mean a against one
// of mean b.
func expectedScore(a, b float64) float64 { return 1 / (1 + math.Pow(10, (b-a)/400)) }

// balance measures the team matches' fairness. With more than two teams
// it compares the strongest and the weakest.
func (r *Result) balance(skillOf, partyOf map[string]float64) *Balance {
	q := &r.Config.Queue
	b := &Balance{}
	var withIn, withoutIn, matchingIn, allIn int
	var off []float64
	within := func(skill map[string]float64, m *contracts.Match) (bool, float64) {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, team := range m.Teams {
			total := 0.0
			for _, id := range team {
				total += skill[id]
			}
			mean := total / float64(max(len(team), 1))
			lo, hi = min(lo, mean), max(hi, mean)
		}
		score := expectedScore(hi, lo)
		return score-0.5 <= 0.03, 100 * (score - 0.5)
	}
	for i := range r.Matches {
		m := &r.Matches[i]
		parties, stacks := false, 0
		for _, id := range m.TicketIDs {
			t, _ := r.Ticket(id)
			parties = parties || len(t.Players) > 1
			if len(t.Players) == q.TeamSize && q.TeamSize > 1 {
				stacks++
			}
		}
		ok, pct := within(skillOf, m)
		off = append(off, pct)
		b.Matches++
		if stacks > 0 {
			b.Stacks++
		}
		if stacks > 1 {
			b.StackVsStack++
		}
		if ok {
			allIn++
		}
		if parties {
			b.WithParties.Matches++
			if ok {
				withIn++
			}
		} else {
			b.WithoutParties.Matches++
			if ok {
				withoutIn++
			}
		}
		if ok, _ := within(partyOf, m); ok {
			matchingIn++
		}
	}
	share := func(n, of int) float64 {
		if of == 0 {
			return 0
		}
		return float64(n) / float64(of)
	}
	b.Within3pct = share(allIn, b.Matches)
	b.MatchingWithin3pct = share(matchingIn, b.Matches)
	b.WithParties.Within3pct = share(withIn, b.WithParties.Matches)
	b.WithoutParties.Within3pct = share(withoutIn, b.WithoutParties.Matches)
	b.Score = summarize(off)
	return b
}

// figures fills rep.Figures from the rest of the report.
func (rep *Report) figures(latencies bool) {
	f := &rep.Figures
	f.WaitP50, f.WaitP90 = rep.Wait.P50, rep.Wait.P90
	f.MeanSpread = rep.Spread.Mean
	if rep.Matches > 0 {
		f.ReferenceSpread = rep.ArrivalGap.Reference / float64(rep.Matches)
	}
	f.Ratio = rep.ArrivalGap.Ratio
	if rep.Balance != nil {
		f.BalanceWithin3pct = &rep.Balance.Within3pct
	}
	if latencies {
		f.BestRegionShare = &rep.BestRegion
	}
	worst := 0.0
	for _, d := range rep.WaitByDecile {
		worst = max(worst, d.Wait.P50)
	}
	switch {
	case rep.Wait.P50 > 0:
		ratio := worst / rep.Wait.P50
		f.BandWaitRatioMax = &ratio
	case worst == 0:
		one := 1.0
		f.BandWaitRatioMax = &one
	}
}

func gap(run float64, xs []float64, groups, minSize, maxSize int, exact bool) (Gap, error) {
	opt, err := MinSpreadSum(xs, groups, minSize, maxSize)
	if err != nil {
		return Gap{}, err
	}
	g := Gap{Run: run, Optimum: opt, Exact: exact}
	if opt > 0 {
		g.Ratio = run / opt
	}
	return g, nil
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

// quantile is the nearest-rank p-quantile of sorted xs.
func quantile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func quantiles(xs []float64) Quantiles {
	s := slices.Sorted(slices.Values(xs))
	return Quantiles{P50: quantile(s, .5), P90: quantile(s, .9), P99: quantile(s, .99)}
}

func summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Sorted(slices.Values(xs))
	return Summary{Mean: sum(s) / float64(len(s)), P90: quantile(s, .9), Max: s[len(s)-1]}
}

// WriteText writes the report for people.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	pct := func(n, of int) float64 {
		if of == 0 {
			return 0
		}
		return 100 * float64(n) / float64(of)
	}
	fmt.Fprintf(&b, "queue %s (%s): seed %d, %g players/s", rep.Queue, rep.Shape, rep.Seed, rep.Rate)
	if rep.Duration != "0s" {
		fmt.Fprintf(&b, " for %s", rep.Duration)
	}
	if rep.Count > 0 {
		fmt.Fprintf(&b, ", at most %d players", rep.Count)
	}
	fmt.Fprintf(&b, "\n  skill %s; parties %s; regions %s\n", rep.Skill, rep.Parties, cmp.Or(rep.Regions, "none"))
	fmt.Fprintf(&b, "tickets in       %7d   players in      %7d\n", rep.TicketsIn, rep.PlayersIn)
	fmt.Fprintf(&b, "matches formed   %7d   players/match   %7.2f\n", rep.Matches, rep.PlayersPerGame)
	fmt.Fprintf(&b, "players matched  %7d (%.2f%%)   expired %d (%.2f%%)   matched past max wait %d tickets\n",
		rep.PlayersMatched, pct(rep.PlayersMatched, rep.PlayersIn), rep.PlayersExpired, pct(rep.PlayersExpired, rep.PlayersIn), rep.Late)
	fmt.Fprintf(&b, "matcher runs     %7.2f per ticket\n", rep.Deliveries)
	fmt.Fprintf(&b, "wait (s)         p50 %.1f   p90 %.1f   p99 %.1f\n", rep.Wait.P50, rep.Wait.P90, rep.Wait.P99)
	fmt.Fprintf(&b, "skill spread     mean %.1f   p90 %.1f   max %.1f   (highest − lowest party skill)\n", rep.Spread.Mean, rep.Spread.P90, rep.Spread.Max)
	fmt.Fprintf(&b, "window use       mean %.2f   p90 %.2f   (spread ÷ window of the oldest ticket)\n", rep.WindowUse.Mean, rep.WindowUse.P90)
	if rep.Imbalance != nil {
		fmt.Fprintf(&b, "team imbalance   mean %.1f   p90 %.1f   max %.1f   (gap between team totals of player skill)\n", rep.Imbalance.Mean, rep.Imbalance.P90, rep.Imbalance.Max)
		fmt.Fprintf(&b, "                 mean %.1f   p90 %.1f   max %.1f   (the same in matching skill: parties at mean + party_spread × range)\n",
			rep.MatchingImbalance.Mean, rep.MatchingImbalance.P90, rep.MatchingImbalance.Max)
	}
	writeGap := func(name string, g Gap) {
		bound := "lower bound"
		if g.Exact {
			bound = "optimum"
		}
		fmt.Fprintf(&b, "%-16s run %.0f   %s %.0f   ratio %.2f\n", name, g.Run, bound, g.Optimum, g.Ratio)
	}
	writeGap("skill gap", rep.Gap)
	writeGap("player skill gap", rep.PlayerGap)
	fmt.Fprintf(&b, "arrival-aware    run %.0f   reference %.0f (%.2f per match)   ratio %.3f   %s\n",
		rep.ArrivalGap.Run, rep.ArrivalGap.Reference, rep.Figures.ReferenceSpread, rep.ArrivalGap.Ratio, rep.ArrivalGap.Method)
	if bal := rep.Balance; bal != nil {
		fmt.Fprintf(&b, "balance          %.1f%% of matches within 50 ± 3 %% (with parties %.1f%% of %d, without %.1f%% of %d; matching skill %.1f%%)\n",
			100*bal.Within3pct, 100*bal.WithParties.Within3pct, bal.WithParties.Matches, 100*bal.WithoutParties.Within3pct, bal.WithoutParties.Matches, 100*bal.MatchingWithin3pct)
		fmt.Fprintf(&b, "                 expected score off 50 %%: mean %.1f   p90 %.1f   max %.1f points;   team-sized parties in %d matches, %d against another\n",
			bal.Score.Mean, bal.Score.P90, bal.Score.Max, bal.Stacks, bal.StackVsStack)
	}
	if rep.Regions != "" {
		fmt.Fprintf(&b, "region           %.1f%% of players in their best region, %.1f%% away from home   latency mean %.0f ms   p90 %.0f ms   max %.0f ms\n",
			100*rep.BestRegion, 100*rep.AwayFromHome, rep.Latency.Mean, rep.Latency.P90, rep.Latency.Max)
	}
	if r := rep.Figures.BandWaitRatioMax; r != nil {
		fmt.Fprintf(&b, "decile wait      highest decile median ÷ overall median %.2f\n", *r)
	} else {
		fmt.Fprintf(&b, "decile wait      overall median 0 s, a decile's above it: ratio unbounded\n")
	}
	fmt.Fprintf(&b, "wait by skill decile:\n  decile  skill range     players  matched    p50 s   p90 s   p99 s\n")
	for i, d := range rep.WaitByDecile {
		fmt.Fprintf(&b, "  %6d  %5.0f – %-5.0f  %7d  %6.2f%%  %6.1f  %6.1f  %6.1f\n",
			i+1, d.Lo, d.Hi, d.Players, pct(d.Matched, d.Players), d.Wait.P50, d.Wait.P90, d.Wait.P99)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
