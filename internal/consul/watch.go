package consul

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// callSlack is how long past Consul's own wait limit a call may take.
const callSlack = 10 * time.Second

// HealthAPI is the part of consul/api's Health client a Watch needs.
type HealthAPI interface {
	ServiceMultipleTags(service string, tags []string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

var _ HealthAPI = (*api.Health)(nil)

// Watch runs a blocking query on /v1/health/service/<Service>?passing for
// the backends that share one (service, tags) pair and publishes every new
// answer to a Store.
type Watch struct {
	Service    string
	Tags       []string
	Backends   []string // published under each of these names
	Datacenter string
	AllowStale bool

	Health   HealthAPI
	Store    *Store
	Rate     rate.Limit    // calls per second; 0: DefaultRate
	Burst    int           // 0: DefaultBurst
	WaitTime time.Duration // 0: DefaultWaitTime
	Log      zerolog.Logger
	// OnInvalid is called once for each instance newly found invalid.
	OnInvalid func(backends []string, inv Invalid)
	// OnError is called for each failed query.
	OnError func(err error)
	// Probe, when set, restarts the query when the agent answers again
	// after an outage.
	Probe *Probe

	slack time.Duration // 0: callSlack; tests shorten it
}

// Key identifies the query of a (service, tags) pair: backends with the same
// key share one Watch.
func Key(service string, tags []string) string {
	t := slices.Clone(tags)
	slices.Sort(t)
	return service + "|" + strings.Join(slices.Compact(t), ",")
}

// Run watches until ctx ends.
func (w *Watch) Run(ctx context.Context) {
	log := w.Log.With().Str("service", w.Service).Strs("backends", w.Backends).Logger()
	b := blocking{datacenter: w.Datacenter, allowStale: w.AllowStale, rate: w.Rate, burst: w.Burst, waitTime: w.WaitTime,
		slack: w.slack, log: log, probe: w.Probe,
		failMsg: "consul query failed; keeping the last known instances and retrying with backoff", backMsg: "consul answers again"}
	var (
		entries      []*api.ServiceEntry
		meta         *api.QueryMeta
		knownInvalid map[string]string
	)
	b.run(ctx, func(opts *api.QueryOptions) (uint64, error) {
		var err error
		entries, meta, err = w.Health.ServiceMultipleTags(w.Service, w.Tags, true, opts)
		if err != nil {
			return 0, err
		}
		return meta.LastIndex, nil
	}, func(err error) {
		w.Store.Fail(w.Backends, err)
		if w.OnError != nil {
			w.OnError(err)
		}
	}, func() {
		at := time.Now()
		valid, invalid := FromEntries(entries)
		knownInvalid = w.reportInvalid(log, knownInvalid, invalid)
		w.Store.Publish(w.Backends, Snapshot{Instances: valid, Invalid: invalid, Passing: len(entries), Index: meta.LastIndex, At: at})
	})
}

// reportInvalid logs (and counts) each invalid instance once, not at every
// answer while it stays registered.
func (w *Watch) reportInvalid(log zerolog.Logger, known map[string]string, invalid []Invalid) map[string]string {
	next := make(map[string]string, len(invalid))
	for _, inv := range invalid {
		key := inv.Node + "/" + inv.ID
		next[key] = inv.Reason
		if known[key] == inv.Reason {
			continue
		}
		log.Warn().Str("instance", inv.ID).Str("node", inv.Node).Str("reason", inv.Reason).Msg("skipping invalid instance")
		if w.OnInvalid != nil {
			w.OnInvalid(w.Backends, inv)
		}
	}
	return next
}
