package sync

import (
	"context"
	"errors"
	"fmt"

	"github.com/hapctl/hapctl/internal/runtime"
)

// Runtime runs batches of commands on HAProxy's stats socket.
type Runtime interface {
	Exec(ctx context.Context, cmds ...runtime.Command) ([]runtime.Result, error)
}

var _ Runtime = (*runtime.Client)(nil)

// Applied counts the outcome of Apply.
type Applied struct {
	OK      int
	Failed  int
	Skipped int // AfterAddr ops of slots whose earlier ops failed
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
	if err != nil {
		res.Skipped += len(second)
		return res, errors.Join(append(errs, err)...)
	}
	ready := second[:0]
	for _, o := range second {
		if failed[o.Backend+"/"+o.Server] {
			res.Skipped++
			continue
		}
		ready = append(ready, o)
	}
	errs2, err := run(ctx, rt, ready, failed, &res)
	errs = append(errs, errs2...)
	if err != nil {
		errs = append(errs, err)
	}
	return res, joinFirst(errs)
}

// run sends one batch and records failed slots; it returns the refused
// commands' errors and the socket error, if any.
func run(ctx context.Context, rt Runtime, ops []Op, failed map[string]bool, res *Applied) ([]error, error) {
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
			failed[o.Backend+"/"+o.Server] = true
			errs = append(errs, fmt.Errorf("%s/%s: %w", o.Backend, o.Server, err))
			continue
		}
		cmds = append(cmds, c)
		sent = append(sent, o)
	}
	results, err := rt.Exec(ctx, cmds...)
	for i, r := range results {
		if r.Err != nil {
			res.Failed++
			failed[sent[i].Backend+"/"+sent[i].Server] = true
			errs = append(errs, r.Err)
			continue
		}
		res.OK++
	}
	if err != nil {
		// Commands without an answer may or may not have run; the next sync
		// reads HAProxy's state again and sends what is still needed.
		for _, o := range sent[len(results):] {
			failed[o.Backend+"/"+o.Server] = true
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
