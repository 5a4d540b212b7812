package queues

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The queues file (MM_QUEUES_FILE) is YAML, or JSON, which YAML reads too:
//
//	queues:
//	  - name: ranked-5v5
//	    teams: 2
//	    team_size: 5
//	    skill: {initial: 100, per_second: 10, max: 600}
//	    party_spread: 0.25
//	    latency: {initial: 60, per_second: 2, max: 150}
//	    balance: {initial: 20, per_second: 1, max: 100}
//	    region_wait: 10s
//	    max_wait: 5m
//	    assign_deadline: 30s
//	    retry_delay: 1s
//	  - name: brawl
//	    free_for_all: {min_players: 8, max_players: 16, fill_wait: 15s}
//
// Fields left out take the built-in duel's values. Unknown fields are errors.
type fileQueue struct {
	Name           string      `yaml:"name"`
	Teams          *int        `yaml:"teams"`
	TeamSize       *int        `yaml:"team_size"`
	FreeForAll     *fileFFA    `yaml:"free_for_all"`
	Skill          *fileWindow `yaml:"skill"`
	PartySpread    *float64    `yaml:"party_spread"`
	Latency        *fileWindow `yaml:"latency"`
	Balance        *fileWindow `yaml:"balance"`
	RegionWait     *duration   `yaml:"region_wait"`
	MaxWait        *duration   `yaml:"max_wait"`
	AcceptTimeout  *duration   `yaml:"accept_timeout"`
	AssignDeadline *duration   `yaml:"assign_deadline"`
	RetryDelay     *duration   `yaml:"retry_delay"`
}

type fileFFA struct {
	MinPlayers int      `yaml:"min_players"`
	MaxPlayers int      `yaml:"max_players"`
	FillWait   duration `yaml:"fill_wait"`
}

type fileWindow struct {
	Initial   float64 `yaml:"initial"`
	PerSecond float64 `yaml:"per_second"`
	Max       float64 `yaml:"max"`
}

// duration reads Go duration strings such as "90s" or "2m".
type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration such as \"30s\"", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = duration(v)
	return nil
}

// LoadFile reads a queues file and checks every queue in it. An error names
// the file, and the queue and field at fault.
func LoadFile(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading queues file: %w", err)
	}
	set, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("queues file %s: %w", path, err)
	}
	return set, nil
}

// Parse reads the queues file format from b.
func Parse(b []byte) (*Set, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("no queues")
	}
	var f struct {
		Queues []yaml.Node `yaml:"queues"`
	}
	if err := decodeFields(doc.Content[0], &f); err != nil {
		return nil, err
	}
	if len(f.Queues) == 0 {
		return nil, errors.New("no queues")
	}
	qs := make([]Queue, 0, len(f.Queues))
	for i := range f.Queues {
		var fq fileQueue
		err := decodeFields(&f.Queues[i], &fq)
		if err == nil {
			var q Queue
			if q, err = fq.queue(); err == nil {
				qs = append(qs, q)
				continue
			}
		}
		if fq.Name == "" {
			return nil, fmt.Errorf("queue #%d: %w", i+1, err)
		}
		return nil, fmt.Errorf("queue %q: %w", fq.Name, err)
	}
	return NewSet(qs...)
}

// decodeFields decodes a mapping node into the struct dst points to, field
// by field through their yaml tags, so that an error names its field (and
// unknown fields are errors at any depth). The name field comes first so
// that later errors can name the queue.
func decodeFields(n *yaml.Node, dst any) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a mapping of fields", n.Line)
	}
	v := reflect.ValueOf(dst).Elem()
	fields := make(map[string]reflect.Value, v.NumField())
	for i := range v.NumField() {
		tag, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		fields[tag] = v.Field(i)
	}
	if name, ok := fields["name"]; ok {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "name" {
				n.Content[i+1].Decode(name.Addr().Interface()) // a bad name is reported below
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		f, ok := fields[key]
		if !ok {
			return fmt.Errorf("line %d: unknown field %q", n.Content[i].Line, key)
		}
		if err := decodeField(val, f); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func decodeField(n *yaml.Node, f reflect.Value) error {
	t := f.Type()
	if t.Kind() == reflect.Pointer {
		f.Set(reflect.New(t.Elem()))
		f, t = f.Elem(), t.Elem()
	}
	if t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType) {
		return decodeFields(n, f.Addr().Interface())
	}
	if err := n.Decode(f.Addr().Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) && len(te.Errors) > 0 {
			return errors.New(te.Errors[0])
		}
		return err
	}
	return nil
}

func (fq *fileQueue) queue() (Queue, error) {
	q := Duel()
	q.Name = fq.Name
	if fq.FreeForAll != nil {
		if fq.Teams != nil || fq.TeamSize != nil {
			return Queue{}, errors.New("free_for_all excludes teams and team_size")
		}
		ffa := fq.FreeForAll
		if ffa.MaxPlayers < 2 {
			return Queue{}, errors.New("free_for_all.max_players must be at least 2")
		}
		if ffa.MinPlayers < 2 || ffa.MinPlayers > ffa.MaxPlayers {
			return Queue{}, errors.New("free_for_all.min_players must be between 2 and max_players")
		}
		q.Teams, q.TeamSize, q.MinTeams, q.FillWait = ffa.MaxPlayers, 1, ffa.MinPlayers, time.Duration(ffa.FillWait)
	}
	if fq.Teams != nil {
		q.Teams = *fq.Teams
	}
	if fq.TeamSize != nil {
		q.TeamSize = *fq.TeamSize
	}
	if fq.Skill != nil {
		q.Skill = Window(*fq.Skill)
	}
	if fq.PartySpread != nil {
		q.PartySpread = *fq.PartySpread
	}
	if fq.Latency != nil {
		q.Latency = Window(*fq.Latency)
	}
	if fq.Balance != nil {
		q.Balance = Window(*fq.Balance)
	}
	if fq.RegionWait != nil {
		q.RegionWait = time.Duration(*fq.RegionWait)
	}
	if fq.MaxWait != nil {
		q.MaxWait = time.Duration(*fq.MaxWait)
	}
	if fq.AcceptTimeout != nil {
		q.AcceptTimeout = time.Duration(*fq.AcceptTimeout)
	}
	if fq.AssignDeadline != nil {
		q.AssignDeadline = time.Duration(*fq.AssignDeadline)
	}
	if fq.RetryDelay != nil {
		q.RetryDelay = time.Duration(*fq.RetryDelay)
	}
	if err := q.Validate(); err != nil {
		return Queue{}, err
	}
	return q, nil
}
