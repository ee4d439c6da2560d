package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/runtime"
)

// Limits on the free text of an override.
const (
	MaxReasonLen = 512
	MaxByLen     = 256
)

// Override is an operator's drain or maint of one Consul instance, kept in
// Consul KV at <kv_prefix>/drains/<backend>/<service id> so that every hapctl
// of a fleet applies it. It wins over Consul's health until it is lifted.
type Override struct {
	State  runtime.State `json:"state"` // StateDrain or StateMaint
	Reason string        `json:"reason,omitempty"`
	By     string        `json:"by,omitempty"`
	At     time.Time     `json:"at"`
}

// Validate checks an override before it is written or after it is read:
// drain or maint, and reason and by as printable text of bounded length.
func (o Override) Validate() error {
	if o.State != runtime.StateDrain && o.State != runtime.StateMaint {
		return fmt.Errorf("state must be drain or maint, not %s", o.State)
	}
	if err := validText(o.Reason, MaxReasonLen); err != nil {
		return fmt.Errorf("reason: %w", err)
	}
	if err := validText(o.By, MaxByLen); err != nil {
		return fmt.Errorf("by: %w", err)
	}
	return nil
}

// Same reports whether two overrides are one operator action.
func (o Override) Same(p Override) bool {
	return o.State == p.State && o.Reason == p.Reason && o.By == p.By && o.At.Equal(p.At)
}

// Overrides are the overrides of one backend by Consul service ID.
type Overrides map[string]Override

// DrainsPrefix is the KV folder of every backend's overrides.
func DrainsPrefix(kvPrefix string) string {
	return strings.Trim(kvPrefix, "/") + "/drains/"
}

// DrainKey is the KV key of one instance's override. The backend must be a
// valid HAProxy name and the ID a valid service ID, so neither can hold '/'.
func DrainKey(kvPrefix, backend, id string) (string, error) {
	if err := runtime.ValidName(backend); err != nil {
		return "", fmt.Errorf("backend: %w", err)
	}
	if err := ValidID(id); err != nil {
		return "", fmt.Errorf("service ID %w", err)
	}
	return DrainsPrefix(kvPrefix) + backend + "/" + id, nil
}

// DrainError is a key under the drains folder that does not parse. Backend
// and ID are set when the key itself is fine and only the value is not.
type DrainError struct {
	Key         string
	Backend, ID string
	Err         error
}

func (e DrainError) Error() string { return "key " + e.Key + ": " + e.Err.Error() }

// ParseDrains reads the pairs under DrainsPrefix into overrides by backend.
// A pair that does not parse is returned as a DrainError and left out.
func ParseDrains(kvPrefix string, pairs api.KVPairs) (map[string]Overrides, []DrainError) {
	prefix := DrainsPrefix(kvPrefix)
	out := map[string]Overrides{}
	var errs []DrainError
	for _, p := range pairs {
		if p == nil {
			continue
		}
		rest, ok := strings.CutPrefix(p.Key, prefix)
		if ok && (rest == "" || strings.HasSuffix(rest, "/") && len(p.Value) == 0) {
			continue // a folder
		}
		backend, id, cut := strings.Cut(rest, "/")
		if !ok || !cut {
			errs = append(errs, DrainError{Key: printable(p.Key), Err: fmt.Errorf("not %s<backend>/<service id>", prefix)})
			continue
		}
		if _, err := DrainKey(kvPrefix, backend, id); err != nil {
			errs = append(errs, DrainError{Key: printable(p.Key), Err: err})
			continue
		}
		var o Override
		dec := json.NewDecoder(strings.NewReader(string(p.Value)))
		dec.DisallowUnknownFields()
		err := dec.Decode(&o)
		if err != nil {
			err = fmt.Errorf("value is not an override: %w", err)
		} else {
			err = o.Validate()
		}
		if err != nil {
			errs = append(errs, DrainError{Key: p.Key, Backend: backend, ID: id, Err: err})
			continue
		}
		if out[backend] == nil {
			out[backend] = Overrides{}
		}
		out[backend][id] = o
	}
	return out, errs
}

// KeepUnreadable puts an override in drains for every key whose value does
// not parse: the last one read for that instance (last may be nil: none),
// or else a drain. A key under the drains folder says an operator took the
// instance out; a value that went bad must not put it back in service.
func KeepUnreadable(drains map[string]Overrides, errs []DrainError, last func(backend, id string) (Override, bool)) {
	for _, e := range errs {
		if e.Backend == "" {
			continue
		}
		var o Override
		ok := false
		if last != nil {
			o, ok = last(e.Backend, e.ID)
		}
		if !ok {
			o = Override{State: runtime.StateDrain, By: "hapctl", Reason: Clip("unreadable value in consul kv, drained until it is fixed: " + e.Err.Error())}
		}
		if drains[e.Backend] == nil {
			drains[e.Backend] = Overrides{}
		}
		drains[e.Backend][e.ID] = o
	}
}

// KVAPI is the part of consul/api's KV client drains need.
type KVAPI interface {
	List(prefix string, q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error)
	Get(key string, q *api.QueryOptions) (*api.KVPair, *api.QueryMeta, error)
	Put(p *api.KVPair, q *api.WriteOptions) (*api.WriteMeta, error)
	Delete(key string, w *api.WriteOptions) (*api.WriteMeta, error)
}

var _ KVAPI = (*api.KV)(nil)

// DrainKV reads and writes the overrides under <Prefix>/drains/ in one
// datacenter.
type DrainKV struct {
	KV         KVAPI
	Prefix     string // consul.kv_prefix
	Datacenter string
}

// Put writes one instance's override.
func (d DrainKV) Put(ctx context.Context, backend, id string, o Override) error {
	if err := o.Validate(); err != nil {
		return err
	}
	key, err := DrainKey(d.Prefix, backend, id)
	if err != nil {
		return err
	}
	value, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if _, err := d.KV.Put(&api.KVPair{Key: key, Value: value}, d.write(ctx)); err != nil {
		return fmt.Errorf("writing %s to consul kv: %w", key, err)
	}
	return nil
}

// Delete removes one instance's override.
func (d DrainKV) Delete(ctx context.Context, backend, id string) error {
	key, err := DrainKey(d.Prefix, backend, id)
	if err != nil {
		return err
	}
	if _, err := d.KV.Delete(key, d.write(ctx)); err != nil {
		return fmt.Errorf("deleting %s from consul kv: %w", key, err)
	}
	return nil
}

// Has reports whether Consul KV holds an override for one instance, asking
// the leader (not a cache), so that an undrain sees a drain another node
// wrote a moment ago.
func (d DrainKV) Has(ctx context.Context, backend, id string) (bool, error) {
	key, err := DrainKey(d.Prefix, backend, id)
	if err != nil {
		return false, err
	}
	p, _, err := d.KV.Get(key, (&api.QueryOptions{Datacenter: d.Datacenter, RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("reading %s from consul kv: %w", key, err)
	}
	return p != nil, nil
}

// Read lists every backend's overrides once, as a daemon starting would see
// them: a value that does not parse counts as a drain.
func (d DrainKV) Read(ctx context.Context, allowStale bool) (map[string]Overrides, error) {
	q := (&api.QueryOptions{Datacenter: d.Datacenter, AllowStale: allowStale}).WithContext(ctx)
	drains, errs, _, err := d.list(q)
	if err != nil {
		return nil, err
	}
	KeepUnreadable(drains, errs, nil)
	return drains, nil
}

// list reads and parses the drains folder, returning the answer's index.
func (d DrainKV) list(q *api.QueryOptions) (map[string]Overrides, []DrainError, uint64, error) {
	pairs, meta, err := d.KV.List(DrainsPrefix(d.Prefix), q)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("reading %s from consul kv: %w", DrainsPrefix(d.Prefix), err)
	}
	if meta.ResultsFilteredByACLs {
		// Consul answers 200 and leaves out the keys the token may not
		// read: drains set through other nodes would be missed without a
		// word.
		return nil, nil, 0, &ACLFilteredError{What: "keys under " + DrainsPrefix(d.Prefix),
			Fix: fmt.Sprintf("give it key_prefix %q read (write, to drain through this node); until then, drains set through other nodes do not apply here", DrainsPrefix(d.Prefix))}
	}
	drains, errs := ParseDrains(d.Prefix, pairs)
	return drains, errs, meta.LastIndex, nil
}

func (d DrainKV) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Datacenter: d.Datacenter}).WithContext(ctx)
}

// DrainWatch runs a blocking query on the drains folder and publishes every
// new answer to a Store.
type DrainWatch struct {
	DrainKV
	AllowStale bool
	Store      *Store
	Log        zerolog.Logger
	WaitTime   time.Duration // 0: DefaultWaitTime
	// OnError is called for each failed query.
	OnError func(err error)
	// Probe, when set, restarts the query when the agent answers again
	// after an outage.
	Probe *Probe

	slack time.Duration // 0: callSlack; tests shorten it
}

// Run watches until ctx ends.
func (w *DrainWatch) Run(ctx context.Context) {
	log := w.Log.With().Str("kv", DrainsPrefix(w.Prefix)).Logger()
	b := blocking{datacenter: w.Datacenter, allowStale: w.AllowStale, waitTime: w.WaitTime, slack: w.slack, log: log, probe: w.Probe,
		failMsg: "reading drains from consul kv failed; keeping the last known drains and retrying with backoff",
		backMsg: "consul kv answers again"}
	var (
		drains map[string]Overrides
		errs   []DrainError
		known  = map[string]bool{} // bad keys already logged
	)
	b.run(ctx, func(opts *api.QueryOptions) (index uint64, err error) {
		drains, errs, index, err = w.list(opts)
		return index, err
	}, func(err error) {
		w.Store.FailDrains(err)
		if w.OnError != nil {
			w.OnError(err)
		}
	}, func() {
		known = w.reportBad(log, known, errs)
		KeepUnreadable(drains, errs, func(backend, id string) (Override, bool) {
			ov, _ := w.Store.Overrides(backend)
			o, ok := ov[id]
			return o, ok
		})
		w.Store.PublishDrains(drains)
	})
}

// reportBad logs each key that does not parse once, not at every answer.
func (w *DrainWatch) reportBad(log zerolog.Logger, known map[string]bool, errs []DrainError) map[string]bool {
	next := make(map[string]bool, len(errs))
	for _, e := range errs {
		next[e.Error()] = true
		if known[e.Error()] {
			continue
		}
		if e.Backend != "" {
			log.Error().Err(e).Str("backend", e.Backend).Str("instance", e.ID).
				Msg("a drain in consul kv does not parse: the instance keeps its last override (or is drained) until the value is fixed or the key deleted")
		} else {
			log.Warn().Err(e).Msg("skipping a key in the drains folder that does not name a backend and an instance")
		}
	}
	return next
}

// drains is the part of a Store that holds overrides.
type drains struct {
	loaded  bool
	by      map[string]Overrides
	changed map[string]time.Time // per backend: when its overrides last changed
	err     error
}

// PublishDrains records every backend's overrides as read from Consul KV;
// backends whose overrides changed are marked dirty.
func (s *Store) PublishDrains(all map[string]Overrides) {
	s.mu.Lock()
	now := time.Now()
	first := !s.drains.loaded
	s.drains.loaded = true
	s.drains.err = nil
	if s.drains.changed == nil {
		s.drains.changed = map[string]time.Time{}
	}
	for b := range unionKeys(s.drains.by, all) {
		if !sameOverrides(s.drains.by[b], all[b]) {
			s.drains.changed[b] = now
			s.dirty[b] = struct{}{}
		}
	}
	if first {
		// Backends whose Consul answer came first were left alone until
		// now: every one of them is due.
		for b := range s.snaps {
			s.dirty[b] = struct{}{}
		}
	}
	s.drains.by = all
	s.mu.Unlock()
	s.signal()
}

// FailDrains records that reading the drains failed; the last known drains
// stay in force.
func (s *Store) FailDrains(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains.err = err
}

// Overrides returns a backend's overrides (shared: read-only), and whether
// the drains were read at all. Until they were, nothing must be synced: an
// instance that an operator drained would be put back in service.
func (s *Store) Overrides(backend string) (Overrides, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drains.by[backend], s.drains.loaded
}

// DrainsChanged returns when a backend's overrides last changed (zero if
// never).
func (s *Store) DrainsChanged(backend string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drains.changed[backend]
}

// DrainsStatus returns whether the drains were ever read, and the error of
// the last read if it failed.
func (s *Store) DrainsStatus() (loaded bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drains.loaded, s.drains.err
}

func sameOverrides(a, b Overrides) bool {
	return maps.EqualFunc(a, b, Override.Same)
}

func unionKeys(a, b map[string]Overrides) map[string]struct{} {
	out := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}
