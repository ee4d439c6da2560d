package consul

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"
)

// Timing of blocking queries.
const (
	// DefaultRate and DefaultBurst bound how often one watch calls Consul.
	// A burst of changes is followed call by call, without delay; only a
	// service changing faster than DefaultRate for longer than the burst is
	// coalesced (each answer holds the whole current state, so nothing is
	// lost). This is the rate limit Consul's documentation asks blocking
	// clients for, without putting a fixed interval on the runtime path.
	DefaultRate  = rate.Limit(50)
	DefaultBurst = 100
	// DefaultWaitTime is how long Consul holds a blocking query open.
	DefaultWaitTime = 5 * time.Minute

	backoffBase = 50 * time.Millisecond
	backoffMax  = time.Second
)

// query is the bookkeeping of one blocking query, as Consul's documentation
// of blocking queries asks: reset the index when it goes backwards, never
// wait on index 0 after the first call, rate-limit calls, back off on errors.
type query struct {
	index    uint64
	answered bool // an answer was seen: the first is always new
	limiter  *rate.Limiter
	failures int
}

func newQuery(limit rate.Limit, burst int) query {
	return query{limiter: rate.NewLimiter(limit, burst)}
}

// update records the index of an answer and reports whether the answer can
// hold anything new. An index that goes backwards (a Consul restart, a
// snapshot restore) resets to 0, so the next call fetches without blocking.
func (q *query) update(index uint64) bool {
	first := !q.answered
	q.answered = true
	switch {
	case index < q.index:
		q.index = 0
		return true
	case index == q.index && !first:
		return false
	}
	q.index = max(index, 1) // an index of 0 never blocks: wait on 1
	return true
}

// wait is how long to sleep before the next call; it takes a token of the
// rate limit.
func (q *query) wait(now time.Time) time.Duration {
	if q.failures > 0 {
		return backoff(q.failures)
	}
	return q.limiter.ReserveN(now, 1).DelayFrom(now)
}

// sleep waits d, or less when the probe sees the agent answer again after
// an outage: then it waits recoveryDelay, so that the watches of every
// service do not all call the agent at one instant. It returns false when
// ctx ends.
func (b blocking) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-b.probe.recovered():
	}
	t.Reset(recoveryDelay())
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// recoveryJitter spreads the calls of every watch over this long after the
// agent answers again.
const recoveryJitter = 200 * time.Millisecond

func recoveryDelay() time.Duration { return rand.N(recoveryJitter) + time.Millisecond }

// restartOnRecovery cancels a call when the probe sees the agent answer
// again after an outage, and tells whether it did.
func (b blocking) restartOnRecovery(callCtx context.Context, cancel context.CancelFunc) func() bool {
	if b.probe == nil {
		return func() bool { return false }
	}
	back := b.probe.recovered()
	var restarted atomic.Bool
	go func() {
		select {
		case <-back:
			restarted.Store(true)
			cancel()
		case <-callCtx.Done():
		}
	}()
	return restarted.Load
}

// ACLFilteredError is an answer Consul gave without what the token may not
// read (X-Consul-Results-Filtered-By-ACLs): taking it for the whole answer
// would drop instances or drains without a word. Consul only says so to a
// request that carries a token.
type ACLFilteredError struct {
	What string // what was left out
	Fix  string // the rule the token needs
}

func (e *ACLFilteredError) Error() string {
	return "consul left out " + e.What + " that the consul token may not read: " + e.Fix
}

// aclRetry is how long a watch waits after an answer that ACLs denied or
// filtered: fixing a policy takes a person, and asking every second would
// load the servers for nothing.
const aclRetry = 30 * time.Second

// deniedByACL reports whether err is Consul refusing or filtering by ACL.
func deniedByACL(err error) bool {
	var fe *ACLFilteredError
	var se api.StatusError
	return errors.As(err, &fe) || (errors.As(err, &se) && se.Code == http.StatusForbidden)
}

// backoff is exponential with jitter: half fixed, half random, so watchers
// that failed together do not retry together.
func backoff(failures int) time.Duration {
	d := backoffBase << min(failures-1, 10)
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1)
}

// blocking is one blocking query run in a loop: the options of every call,
// and the messages its failures and recovery are logged with.
type blocking struct {
	datacenter string
	allowStale bool
	rate       rate.Limit    // 0: DefaultRate
	burst      int           // 0: DefaultBurst
	waitTime   time.Duration // 0: DefaultWaitTime
	slack      time.Duration // 0: callSlack
	log        zerolog.Logger
	failMsg    string // logged at the first failure in a row and every 20th
	backMsg    string // logged when an answer follows failures
	// probe, when set, restarts a call in flight when the agent answers
	// again after an outage.
	probe *Probe
}

// run calls until ctx ends. call makes one call with the options given and
// returns the answer's index; failed is called for each failed call,
// answered for each answer that can hold something new.
func (b blocking) run(ctx context.Context, call func(*api.QueryOptions) (uint64, error), failed func(error), answered func()) {
	q := newQuery(cmp.Or(b.rate, DefaultRate), cmp.Or(b.burst, DefaultBurst))
	wait := cmp.Or(b.waitTime, DefaultWaitTime)
	restartedLast := false // the last call was cut short by the agent's recovery
	for {
		d := q.wait(time.Now())
		if restartedLast {
			d = recoveryDelay()
		}
		if d > 0 && !b.sleep(ctx, d) {
			return
		}
		// Consul holds the query up to wait plus wait/16 of jitter; past
		// that (a stopped agent, a half-open connection) the call fails.
		callCtx, cancel := context.WithTimeout(ctx, wait+wait/16+cmp.Or(b.slack, callSlack))
		restarted := b.restartOnRecovery(callCtx, cancel)
		waitIndex := q.index
		if q.failures > 0 || restartedLast {
			// The first call after failures or an outage does not block:
			// it clears the error at once instead of when something
			// changes, and it cannot hang on an index that a restarted
			// agent may never reach again.
			waitIndex = 0
		}
		opts := (&api.QueryOptions{
			Datacenter: b.datacenter,
			AllowStale: b.allowStale,
			WaitIndex:  waitIndex,
			WaitTime:   wait,
		}).WithContext(callCtx)
		index, err := call(opts)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if restartedLast = err != nil && restarted(); restartedLast {
			// The agent answers again: ask again soon, without backoff.
			continue
		}
		if err != nil {
			err = explain(err)
			q.failures++
			if q.failures == 1 || q.failures%20 == 0 {
				b.log.Warn().Err(err).Int("failures", q.failures).Msg(b.failMsg)
			}
			failed(err)
			if deniedByACL(err) && !b.sleep(ctx, aclRetry) {
				return
			}
			continue
		}
		b.probe.answered()
		recovered := q.failures > 0
		if recovered {
			b.log.Info().Int("failures", q.failures).Msg(b.backMsg)
		}
		q.failures = 0
		if !q.update(index) && !recovered {
			continue
		}
		answered()
	}
}

// explain adds what to do to the Consul errors an operator can fix.
func explain(err error) error {
	var se api.StatusError
	if errors.As(err, &se) && se.Code == http.StatusTooManyRequests {
		return fmt.Errorf("%w: the agent limits connections per client; hapctl holds one blocking query per "+
			"(service, tags) pair plus one for drains: raise limits.http_max_conns_per_client on the agent above that", err)
	}
	return err
}
