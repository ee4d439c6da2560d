package consul

import (
	"math/rand/v2"
	"time"

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

// backoff is exponential with jitter: half fixed, half random, so watchers
// that failed together do not retry together.
func backoff(failures int) time.Duration {
	d := backoffBase << min(failures-1, 10)
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1)
}
