package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Master talks to HAProxy's master CLI (haproxy -W -S <socket>), which
// reloads the workers and lists them.
type Master struct {
	Socket  string
	Timeout time.Duration // per command; 0 means DefaultTimeout
}

// Proc is one line of the master's `show proc`.
type Proc struct {
	PID     int
	Type    string // master, worker or program
	Reloads int    // master: reloads done; worker: reloads it has lived through
	Failed  int    // master only: failed reloads
}

// Procs is the answer to `show proc`.
type Procs struct {
	Master  Proc
	Workers []Proc // newest first, as HAProxy lists them
}

// Current returns the newest worker, the one serving new connections: the
// one that has lived through the fewest reloads (after a failed reload the
// surviving worker counts 1, not 0).
func (p Procs) Current() (Proc, bool) {
	if len(p.Workers) == 0 {
		return Proc{}, false
	}
	cur := p.Workers[0]
	for _, w := range p.Workers[1:] {
		if w.Reloads < cur.Reloads {
			cur = w
		}
	}
	return cur, true
}

// ShowProc asks the master for its processes.
func (m *Master) ShowProc(ctx context.Context) (Procs, error) {
	answer, err := m.oneShot(ctx, "show proc")
	if err != nil {
		return Procs{}, err
	}
	return ParseShowProc(answer)
}

// Reload asks the master to reload and waits until a new worker runs. HAProxy
// 2.6 sends no answer to `reload`; 2.7+ answers Success=0/1, which is checked
// when present.
func (m *Master) Reload(ctx context.Context) (Procs, error) {
	before, err := m.ShowProc(ctx)
	if err != nil {
		return Procs{}, fmt.Errorf("before reload: %w", err)
	}
	answer, err := m.oneShot(ctx, "reload")
	var ce *ConnError
	if err != nil && !(errors.As(err, &ce) && ce.Op == "read") {
		// The master re-executes itself on reload and may drop the
		// connection without an answer: only a failed send is an error.
		return Procs{}, fmt.Errorf("sending reload: %w", err)
	}
	if strings.Contains(answer, "Success=0") {
		return Procs{}, fmt.Errorf("%w: %s", ErrReloadFailed, strings.TrimSpace(answer))
	}
	return m.WaitNewWorker(ctx, before)
}

// WaitNewWorker polls `show proc` until a worker that was not in before runs,
// or the master counts a failed reload.
func (m *Master) WaitNewWorker(ctx context.Context, before Procs) (Procs, error) {
	old := make([]int, 0, len(before.Workers))
	for _, w := range before.Workers {
		old = append(old, w.PID)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		now, err := m.ShowProc(ctx)
		switch {
		case err != nil:
			lastErr = err // the master re-executes itself during a reload
		case now.Master.Failed > before.Master.Failed:
			return now, fmt.Errorf("%w: the master counts %d failed reloads (was %d); see HAProxy's log", ErrReloadFailed, now.Master.Failed, before.Master.Failed)
		default:
			if cur, ok := now.Current(); ok && !slices.Contains(old, cur.PID) {
				return now, nil
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return Procs{}, fmt.Errorf("waiting for a new haproxy worker: %w (last error: %v)", ctx.Err(), lastErr)
			}
			return Procs{}, fmt.Errorf("waiting for a new haproxy worker: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

func (m *Master) oneShot(ctx context.Context, cmd string) (string, error) {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	conn, err := dialSocket(ctx, m.Socket, timeout)
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", &ConnError{Socket: m.Socket, Op: "write", Err: err}
	}
	// Without prompt mode the master answers and closes once our side is
	// closed; until then it waits for more commands.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return "", &ConnError{Socket: m.Socket, Op: "write", Err: err}
		}
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxAnswer))
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return string(b), &ConnError{Socket: m.Socket, Op: "read", Err: err}
	}
	return string(b), nil
}

// ParseShowProc parses the master's `show proc` answer.
func ParseShowProc(answer string) (Procs, error) {
	var p Procs
	section := ""
	for _, line := range strings.Split(answer, "\n") {
		if strings.HasPrefix(line, "#") {
			section = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		reloads, _ := strconv.Atoi(f[2])
		proc := Proc{PID: pid, Type: f[1], Reloads: reloads}
		switch {
		case f[1] == "master":
			// "<pid> master <reloads> [failed: <n>] <uptime> <version>"
			if i := strings.Index(line, "[failed: "); i >= 0 {
				rest := line[i+len("[failed: "):]
				if j := strings.IndexByte(rest, ']'); j >= 0 {
					proc.Failed, _ = strconv.Atoi(strings.TrimSpace(rest[:j]))
				}
			}
			p.Master = proc
		case section == "workers" || f[1] == "worker":
			p.Workers = append(p.Workers, proc)
		}
	}
	if p.Master.PID == 0 {
		return p, fmt.Errorf("%w: show proc has no master line (is %q the master socket?)", ErrProtocol, firstLine(answer))
	}
	return p, nil
}
