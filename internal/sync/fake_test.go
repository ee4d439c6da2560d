package sync

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	gosync "sync"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

// fakeHAProxy simulates the stats socket commands the loop sends, against
// an in-memory server table.
type fakeHAProxy struct {
	mu       gosync.Mutex
	pid      int
	backends map[string][]runtime.ServerState
	refuse   func(cmd string) string // non-empty: the answer refusing cmd
	static   map[string]bool         // backends that refuse dynamic servers
	busy     map[string]bool         // "backend/server" with connections: del server refuses
	sessions map[string]int          // "backend/server": sessions `show stat` reports
	down     error                   // the socket fails
	cutAfter int                     // >0: connection drops after this many answers
	sent     []string                // every command received
	batches  int                     // Exec calls so far
	batchOf  []int                   // for each sent command, its Exec call
	// violations are commands that broke hapctl's own rules, such as an
	// address change on a slot in service.
	violations []string
}

func newFake(backend string, slots int) *fakeHAProxy {
	f := &fakeHAProxy{pid: 100, backends: map[string][]runtime.ServerState{}}
	for i := 1; i <= slots; i++ {
		f.backends[backend] = append(f.backends[backend], free(slot.Name(i)))
	}
	return f
}

func (f *fakeHAProxy) Exec(_ context.Context, cmds ...runtime.Command) ([]runtime.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down != nil {
		return nil, f.down
	}
	var out []runtime.Result
	f.batches++
	for i, c := range cmds {
		if f.cutAfter > 0 && i == f.cutAfter {
			return out, &runtime.ConnError{Socket: "fake", Op: "read", Err: errors.New("connection reset")}
		}
		f.sent = append(f.sent, c.String())
		f.batchOf = append(f.batchOf, f.batches)
		answer := strings.TrimPrefix(f.answer(c.String()), "ERR ")
		out = append(out, runtime.Result{Command: c, Answer: answer, Err: c.Check(answer)})
	}
	return out, nil
}

func (f *fakeHAProxy) answer(cmd string) string {
	if f.refuse != nil {
		if a := f.refuse(cmd); a != "" {
			return "ERR " + a
		}
	}
	w := strings.Fields(cmd)
	switch {
	case cmd == "show info":
		return "Name: HAProxy\nPid: " + strconv.Itoa(f.pid)
	case len(w) == 4 && w[0] == "show" && w[2] == "state":
		servers, ok := f.backends[w[3]]
		if !ok {
			return "ERR Can't find backend."
		}
		var b strings.Builder
		b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_port\n")
		for i, s := range servers {
			fmt.Fprintf(&b, "3 %s %d %s %s 2 %d %d 1 %d\n", w[3], i+1, s.Name, s.Addr, s.Admin, s.Weight, s.Port)
		}
		return b.String()
	case len(w) == 5 && w[0] == "show" && w[1] == "stat":
		servers, ok := f.backends[w[2]]
		if !ok {
			return "ERR Can't find backend."
		}
		var b strings.Builder
		b.WriteString("# pxname,svname,qcur,qmax,scur,smax,\n")
		for _, s := range servers {
			fmt.Fprintf(&b, "%s,%s,0,0,%d,9,\n", w[2], s.Name, f.sessions[w[2]+"/"+s.Name])
		}
		fmt.Fprintf(&b, "%s,BACKEND,0,0,0,9,\n", w[2])
		return b.String()
	case len(w) >= 5 && w[0] == "add" && w[1] == "server":
		be, name, _ := strings.Cut(w[2], "/")
		switch {
		case f.static[be]:
			return "ERR Backend must use a dynamic load balancing to support dynamic servers."
		case f.server(be, name) != nil:
			return "ERR Already exists a server with the same name in backend."
		}
		ep := netip.MustParseAddrPort(w[3])
		weight, _ := strconv.Atoi(w[5])
		f.backends[be] = append(f.backends[be], runtime.ServerState{Backend: be, Name: name, Addr: ep.Addr(), Port: int(ep.Port()),
			Weight: weight, Admin: runtime.AdminForcedMaint})
		return "New server registered."
	case len(w) == 3 && w[0] == "del" && w[1] == "server":
		be, name, _ := strings.Cut(w[2], "/")
		s := f.server(be, name)
		switch {
		case s == nil:
			return "ERR No such server."
		case s.State() != runtime.StateMaint:
			return "ERR Only servers in maintenance mode can be deleted."
		case f.busy[w[2]]:
			return "ERR Server still has connections attached to it, cannot remove it."
		}
		f.backends[be] = slices.DeleteFunc(f.backends[be], func(s runtime.ServerState) bool { return s.Name == name })
		return "Server deleted."
	case len(w) == 3 && w[0] == "enable" && (w[1] == "health" || w[1] == "agent"):
		be, name, _ := strings.Cut(w[2], "/")
		if f.server(be, name) == nil {
			return "ERR No such server."
		}
		return ""
	case len(w) >= 5 && w[0] == "set" && w[1] == "server":
		be, name, _ := strings.Cut(w[2], "/")
		s := f.server(be, name)
		if s == nil {
			return "ERR No such server."
		}
		switch w[3] {
		case "addr":
			if s.State() != runtime.StateMaint {
				f.violations = append(f.violations, cmd+" (slot is "+s.State().String()+")")
			}
			from := s.Endpoint()
			s.Addr = netip.MustParseAddr(w[4])
			s.Port, _ = strconv.Atoi(w[6])
			return fmt.Sprintf("IP changed from '%s' to '%s' by 'stats socket command'", from, s.Endpoint())
		case "weight":
			s.Weight, _ = strconv.Atoi(w[4])
		case "state":
			s.Admin &^= runtime.AdminForcedMaint | runtime.AdminForcedDrain
			switch w[4] {
			case "maint":
				s.Admin |= runtime.AdminForcedMaint
			case "drain":
				s.Admin |= runtime.AdminForcedDrain
			}
		}
		return ""
	}
	return "ERR Unknown command"
}

func (f *fakeHAProxy) server(backend, name string) *runtime.ServerState {
	for i := range f.backends[backend] {
		if f.backends[backend][i].Name == name {
			return &f.backends[backend][i]
		}
	}
	return nil
}

// table returns "srvN=addr:port/state/weight" for every slot.
func (f *fakeHAProxy) table(backend string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var parts []string
	for _, s := range f.backends[backend] {
		parts = append(parts, fmt.Sprintf("%s=%s/%s/%d", s.Name, s.Endpoint(), s.State(), s.Weight))
	}
	return strings.Join(parts, " ")
}

func (f *fakeHAProxy) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...)
}

func (f *fakeHAProxy) set(fn func(f *fakeHAProxy)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// batchOfCommand returns the Exec call that carried the first command equal
// to cmd after the Exec call `after`, or 0.
func (f *fakeHAProxy) batchOfCommand(cmd string, after int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range f.sent {
		if c == cmd && f.batchOf[i] > after {
			return f.batchOf[i]
		}
	}
	return 0
}
