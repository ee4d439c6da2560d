package consul

import (
	"math/rand/v2"
	"time"
)

// Timing of blocking queries.
const (
	// DefaultMinInterval spaces consecutive calls of one watch, so a service
	// that changes constantly costs at most 1/DefaultMinInterval calls a
	// second. A change that arrives while the watch blocks is seen at once.
	DefaultMinInterval = 10 * time.Millisecond
	// DefaultWaitTime is how long Consul holds a blocking query open.
	DefaultWaitTime = 5 * time.Minute

	backoffBase = 50 * time.Millisecond
	backoffMax  = time.Second
)

// query is the bookkeeping of one blocking query, as Consul's documentation
// of blocking queries asks: reset the index when it goes backwards, never
// wait on index 0 after the first call, space calls out, back off on errors.
type query struct {
	index       uint64
	minInterval time.Duration
	lastStart   time.Time
	failures    int
}

// update records the index of an answer and reports whether the answer can
// hold anything new. An index that goes backwards (a Consul restart, a
// snapshot restore) resets to 0, so the next call fetches without blocking.
func (q *query) update(index uint64) bool {
	switch {
	case index < q.index:
		q.index = 0
		return true
	case index == q.index:
		return false
	}
	q.index = max(index, 1)
	return true
}

// wait is how long to sleep before the next call.
func (q *query) wait(now time.Time) time.Duration {
	if q.failures > 0 {
		return backoff(q.failures)
	}
	if q.lastStart.IsZero() {
		return 0
	}
	return q.minInterval - now.Sub(q.lastStart)
}

// backoff is exponential with jitter: half fixed, half random, so watchers
// that failed together do not retry together.
func backoff(failures int) time.Duration {
	d := backoffBase << min(failures-1, 10)
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1)
}
