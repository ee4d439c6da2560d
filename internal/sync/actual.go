package sync

import (
	"context"
	"fmt"

	"github.com/hapctl/hapctl/internal/runtime"
)

// Actual is HAProxy's state of the backends one sync looks at.
type Actual struct {
	// Pid is the worker answering on the stats socket; a new pid means a
	// reload or restart, after which every backend must be checked.
	Pid     int
	Servers map[string][]runtime.ServerState
	// Errs holds the backends HAProxy could not show (not in its config).
	Errs map[string]error
}

// ReadActual reads `show info` and `show servers state` of each backend in
// one batch.
func ReadActual(ctx context.Context, rt Runtime, backends []string) (Actual, error) {
	cmds := make([]runtime.Command, 0, len(backends)+1)
	cmds = append(cmds, runtime.ShowInfo())
	for _, b := range backends {
		c, err := runtime.ShowServersState(b)
		if err != nil {
			return Actual{}, fmt.Errorf("backend %q: %w", b, err)
		}
		cmds = append(cmds, c)
	}
	results, err := rt.Exec(ctx, cmds...)
	if err != nil {
		return Actual{}, err
	}
	if results[0].Err != nil {
		return Actual{}, results[0].Err
	}
	info, err := runtime.ParseInfo(results[0].Answer)
	if err != nil {
		return Actual{}, err
	}
	a := Actual{Pid: info.Pid, Servers: make(map[string][]runtime.ServerState, len(backends)), Errs: map[string]error{}}
	for i, b := range backends {
		r := results[i+1]
		if r.Err != nil {
			a.Errs[b] = fmt.Errorf("backend %s is not in the running HAProxy: %w", b, r.Err)
			continue
		}
		servers, err := runtime.ParseServersState(r.Answer)
		if err != nil {
			a.Errs[b] = fmt.Errorf("backend %s: %w", b, err)
			continue
		}
		a.Servers[b] = servers
	}
	return a, nil
}
