package sync

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"

	"github.com/hapctl/hapctl/internal/runtime"
)

// Runtime runs batches of commands on HAProxy's stats socket.
type Runtime interface {
	Exec(ctx context.Context, cmds ...runtime.Command) ([]runtime.Result, error)
}

var _ Runtime = (*runtime.Client)(nil)

// Parallelism of large batches: HAProxy runs the commands of one CLI
// connection one after the other, so a batch of thousands of commands is
// split by slot over a few connections (each slot's commands stay in order
// on one connection).
const (
	parallelMin  = 512 // commands below which one connection is used
	parallelConn = 4
)

// Applied counts the outcome of Apply.
type Applied struct {
	OK      int
	Failed  int
	Skipped int // AfterAddr ops of slots whose earlier ops failed, and refused Soft ops
	// FailedBackends holds the backends with a failed or skipped op.
	FailedBackends map[string]bool
	// NotDynamic holds, by backend, HAProxy's refusal of `add server`: the
	// backend cannot take dynamic servers.
	NotDynamic map[string]error
	// Deferred holds the backends with a Soft op HAProxy put off (a slot
	// that still has connections): to be tried again later.
	Deferred map[string]bool
}

func (a *Applied) deferred(backend string) {
	if a.Deferred == nil {
		a.Deferred = map[string]bool{}
	}
	a.Deferred[backend] = true
}

func (a *Applied) notDynamic(backend string, err error) {
	if a.NotDynamic == nil {
		a.NotDynamic = map[string]error{}
	}
	if _, ok := a.NotDynamic[backend]; !ok {
		a.NotDynamic[backend] = err
	}
}

// Apply sends ops on the runtime socket in at most two batches. The first
// holds every op except the AfterAddr ones; the second brings re-addressed
// slots back in service, but only those whose ops all succeeded, so a slot
// whose address change was refused stays out of service. It returns an error
// when the socket failed or HAProxy refused a command.
func Apply(ctx context.Context, rt Runtime, ops []Op) (Applied, error) {
	var res Applied
	first, second := make([]Op, 0, len(ops)), make([]Op, 0)
	for _, o := range ops {
		if o.AfterAddr {
			second = append(second, o)
		} else {
			first = append(first, o)
		}
	}
	failed := map[string]bool{}
	errs, err := run(ctx, rt, first, failed, &res)
	if err == nil {
		ready := second[:0]
		for _, o := range second {
			if failed[slotKey(o)] {
				res.Skipped++
				continue
			}
			ready = append(ready, o)
		}
		var more []error
		more, err = run(ctx, rt, ready, failed, &res)
		errs = append(errs, more...)
	} else {
		res.Skipped += len(second)
		for _, o := range second {
			failed[slotKey(o)] = true
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	res.FailedBackends = map[string]bool{}
	for _, o := range ops {
		if failed[slotKey(o)] {
			res.FailedBackends[o.Backend] = true
		}
	}
	return res, joinFirst(errs)
}

func slotKey(o Op) string { return o.Backend + "/" + o.Server }

// run sends one batch, over several connections when it is large, and
// records failed slots; it returns the refused commands' errors and the
// first socket error, if any.
func run(ctx context.Context, rt Runtime, ops []Op, failed map[string]bool, res *Applied) ([]error, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	if len(ops) < parallelMin {
		return runOne(ctx, rt, ops, failed, res)
	}
	groups := splitBySlot(ops, parallelConn)
	type outcome struct {
		res    Applied
		failed map[string]bool
		errs   []error
		err    error
	}
	outs := make([]outcome, len(groups))
	var wg gosync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[i]
			o.failed = map[string]bool{}
			o.errs, o.err = runOne(ctx, rt, g, o.failed, &o.res)
		}()
	}
	wg.Wait()
	var errs []error
	var first error
	for _, o := range outs {
		res.OK += o.res.OK
		res.Failed += o.res.Failed
		res.Skipped += o.res.Skipped
		for b, err := range o.res.NotDynamic {
			res.notDynamic(b, err)
		}
		for b := range o.res.Deferred {
			res.deferred(b)
		}
		for k := range o.failed {
			failed[k] = true
		}
		errs = append(errs, o.errs...)
		if first == nil {
			first = o.err
		}
	}
	return errs, first
}

// splitBySlot deals the slots' ops out to n groups, keeping each slot's ops
// together and in order.
func splitBySlot(ops []Op, n int) [][]Op {
	groups := make([][]Op, n)
	index := map[string]int{}
	next := 0
	for _, o := range ops {
		key := slotKey(o)
		g, ok := index[key]
		if !ok {
			g = next % n
			index[key] = g
			next++
		}
		groups[g] = append(groups[g], o)
	}
	return groups
}

// runOne sends one batch on one connection.
func runOne(ctx context.Context, rt Runtime, ops []Op, failed map[string]bool, res *Applied) ([]error, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	var errs []error
	cmds := make([]runtime.Command, 0, len(ops))
	sent := make([]Op, 0, len(ops))
	for _, o := range ops {
		c, err := o.Command()
		if err != nil { // the plan only holds validated values; this is a bug
			res.Failed++
			failed[slotKey(o)] = true
			errs = append(errs, fmt.Errorf("%s/%s: %w", o.Backend, o.Server, err))
			continue
		}
		cmds = append(cmds, c)
		sent = append(sent, o)
	}
	results, err := rt.Exec(ctx, cmds...)
	for i, r := range results {
		if r.Err != nil && sent[i].Soft && (errors.Is(r.Err, runtime.ErrServerBusy) || errors.Is(r.Err, runtime.ErrNoSuchServer)) {
			res.Skipped++
			res.deferred(sent[i].Backend)
			continue
		}
		if r.Err != nil {
			if errors.Is(r.Err, runtime.ErrNotDynamic) {
				res.notDynamic(sent[i].Backend, r.Err)
			}
			res.Failed++
			failed[slotKey(sent[i])] = true
			errs = append(errs, r.Err)
			continue
		}
		res.OK++
	}
	if err != nil {
		// Commands without an answer may or may not have run; the next sync
		// reads HAProxy's state again and sends what is still needed.
		for _, o := range sent[len(results):] {
			failed[slotKey(o)] = true
		}
		res.Failed += len(sent) - len(results)
		return errs, err
	}
	return errs, nil
}

// joinFirst joins at most 5 errors and counts the rest.
func joinFirst(errs []error) error {
	if len(errs) > 5 {
		errs = append(errs[:5:5], fmt.Errorf("and %d more errors", len(errs)-5))
	}
	return errors.Join(errs...)
}
