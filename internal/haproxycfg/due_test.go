package haproxycfg

import (
	"testing"
	"time"
)

// A pass that only writes the files waits for the changes to stop, at most
// 10 s after the first, and keeps apart from the last pass; both waits grow
// with what the last pass took.
func TestReloaderPersistTiming(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const none = -1
	for _, c := range []struct {
		name                     string
		first, changed, lastSave time.Duration // after t0; lastSave none: no pass yet
		lastPass                 time.Duration
		want                     time.Duration
	}{
		{"small config: 100 ms after the change", 0, 0, none, 0, 100 * time.Millisecond},
		{"a burst: after its last change", 0, 3 * time.Second, none, 0, 3100 * time.Millisecond},
		{"endless churn: 10 s after the first change", 0, 30 * time.Second, none, 0, 10 * time.Second},
		{"small config: 100 ms after the last pass", 5 * time.Second, 5 * time.Second, 4950 * time.Millisecond, 2 * time.Millisecond, 5100 * time.Millisecond},
		{"big config: a second of quiet", 5 * time.Second, 5 * time.Second, 0, 300 * time.Millisecond, 6 * time.Second},
		{"big config: 2 s after the last pass", 5 * time.Second, 5 * time.Second, 4500 * time.Millisecond, 300 * time.Millisecond, 6500 * time.Millisecond},
		{"medium config: 5× and 10× the last pass", 5 * time.Second, 5 * time.Second, 4900 * time.Millisecond, 50 * time.Millisecond, 5400 * time.Millisecond},
	} {
		r := &Reloader{MinInterval: 30 * time.Second, persist: true, first: t0.Add(c.first), changed: t0.Add(c.changed), lastPass: c.lastPass}
		if c.lastSave != none {
			r.lastSave = t0.Add(c.lastSave)
		}
		at, ok := r.due()
		if !ok || !at.Equal(t0.Add(c.want)) {
			t.Errorf("%s: due at %v (%v), want %v", c.name, at.Sub(t0), ok, c.want)
		}
	}
	// Before the first pass, the guess from the file's size stands in.
	r := &Reloader{persist: true, first: t0, changed: t0, firstCost: 200 * time.Millisecond}
	if at, _ := r.due(); !at.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("first pass of a big config: due at %v, want 2s (twice the settle)", at.Sub(t0))
	}
	if _, ok := (&Reloader{}).due(); ok {
		t.Error("due with nothing pending")
	}
}
