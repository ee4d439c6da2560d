package consul

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
)

// Timing of the agent probe.
const (
	DefaultProbeInterval = 5 * time.Second
	DefaultProbeTimeout  = 2 * time.Second
	downInterval         = 500 * time.Millisecond
)

var errNoLeader = errors.New("the consul cluster has no leader")

// StatusAPI is the part of consul/api's Status client a Probe needs.
type StatusAPI interface {
	LeaderWithQueryOptions(q *api.QueryOptions) (string, error)
}

var _ StatusAPI = (*api.Status)(nil)

// Probe asks the Consul agent at an interval whether it answers at all.
//
// A blocking query cannot tell a quiet service from a hung agent or a
// connection that died without a reset: it just waits, up to its wait time
// (minutes). The probe makes such an outage show in /readyz within
// Interval + 2 Timeouts + downInterval (two failures in a row: ≈ 10 s), and
// when the agent answers again after failing, it restarts every blocking
// query in flight, so none stays stuck on a connection that died with the
// outage.
//
// The probe asks for the raft leader, which any agent answers from memory.
// With RequireLeader, "no leader" is a failure too: the cluster cannot
// answer consistent queries, and the recovery that restarts the queries is
// the election of a leader, not the agent's first answer.
type Probe struct {
	Status   StatusAPI
	Interval time.Duration // 0: DefaultProbeInterval
	Timeout  time.Duration // 0: DefaultProbeTimeout
	Log      zerolog.Logger
	// RequireLeader counts an agent whose cluster has no leader as down: its
	// consistent queries are held or fail. Without it (allow_stale), any
	// answer will do.
	RequireLeader bool
	// OnError is called for each failed probe.
	OnError func(err error)

	mu    sync.Mutex
	err   error         // set after downAfter failures in a row
	fails int           // failures in a row
	back  chan struct{} // closed and replaced when the agent answers after failing
}

// downAfter is how many probes in a row must fail before the agent counts
// as down: one slow answer is not an outage.
const downAfter = 2

// Run probes until ctx ends. While the agent does not answer, it probes
// every downInterval, so that recovery shows soon.
func (p *Probe) Run(ctx context.Context) {
	t := time.NewTimer(cmp.Or(p.Interval, DefaultProbeInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, cmp.Or(p.Timeout, DefaultProbeTimeout))
		leader, err := p.Status.LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(callCtx))
		cancel()
		if err == nil && p.RequireLeader && leader == "" {
			err = errNoLeader
		}
		if ctx.Err() != nil {
			return
		}
		p.record(err)
		next := cmp.Or(p.Interval, DefaultProbeInterval)
		if err != nil {
			next = min(next, downInterval)
		}
		t.Reset(next)
	}
}

// answered records that a query answered: the agent is up, whatever the
// last probe said.
func (p *Probe) answered() {
	if p != nil && p.Err() != nil {
		p.record(nil)
	}
}

func (p *Probe) record(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil && p.OnError != nil {
		p.OnError(err)
	}
	if err == nil {
		p.fails = 0
	} else if p.fails++; p.fails < downAfter {
		return
	}
	switch {
	case err != nil && p.err == nil:
		p.Log.Error().Err(err).Msg("consul agent does not answer; HAProxy is kept as it is")
	case err == nil && p.err != nil:
		p.Log.Info().Msg("consul agent answers again: restarting every watch")
		if p.back != nil {
			close(p.back)
			p.back = nil
		}
	}
	p.err = err
}

// Err returns the last probe's error: nil while the agent answers.
func (p *Probe) Err() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// recovered returns a channel closed the next time the agent answers after
// failing; nil (never ready) for a nil Probe.
func (p *Probe) recovered() <-chan struct{} {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.back == nil {
		p.back = make(chan struct{})
	}
	return p.back
}
