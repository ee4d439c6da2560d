package runtime

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// State is a server's administrative state as hapctl drives it.
type State uint8

// The states `set server ... state` accepts.
const (
	StateReady State = iota + 1
	StateDrain
	StateMaint
)

// Valid reports whether s is one of the three states.
func (s State) Valid() bool { return s >= StateReady && s <= StateMaint }

func (s State) String() string {
	switch s {
	case StateReady:
		return "ready"
	case StateDrain:
		return "drain"
	case StateMaint:
		return "maint"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// ParseState parses "ready", "drain" or "maint".
func ParseState(s string) (State, error) {
	switch s {
	case "ready":
		return StateReady, nil
	case "drain":
		return StateDrain, nil
	case "maint":
		return StateMaint, nil
	}
	return 0, fmt.Errorf("state %q is not ready, drain or maint", s)
}

// MarshalText lets State appear as its name in JSON.
func (s State) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("invalid state %d", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses a state name.
func (s *State) UnmarshalText(b []byte) error {
	v, err := ParseState(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// AdminFlags is srv_admin_state from `show servers state`: a bit mask.
type AdminFlags uint16

// The bits of srv_admin_state (HAProxy's SRV_ADMF_*).
const (
	AdminForcedMaint    AdminFlags = 0x01 // set server state maint / disable server
	AdminInheritedMaint AdminFlags = 0x02 // from a tracked server
	AdminConfigMaint    AdminFlags = 0x04 // "disabled" in the config; a marker, not maintenance
	AdminForcedDrain    AdminFlags = 0x08 // set server state drain
	AdminInheritedDrain AdminFlags = 0x10 // from a tracked server
	AdminResolverMaint  AdminFlags = 0x20 // DNS resolution failed

	adminMaintMask = AdminForcedMaint | AdminInheritedMaint | AdminResolverMaint
	adminDrainMask = AdminForcedDrain | AdminInheritedDrain
)

// State folds the bits into the effective state. AdminConfigMaint alone does
// not stop traffic: HAProxy keeps it after `set server ... state ready`.
func (f AdminFlags) State() State {
	switch {
	case f&adminMaintMask != 0:
		return StateMaint
	case f&adminDrainMask != 0:
		return StateDrain
	}
	return StateReady
}

// OpState is srv_op_state: what health checks and tracking say.
type OpState uint8

// Operational states (HAProxy's SRV_ST_*).
const (
	OpStopped  OpState = 0
	OpStarting OpState = 1
	OpRunning  OpState = 2
	OpStopping OpState = 3
)

func (o OpState) String() string {
	switch o {
	case OpStopped:
		return "down"
	case OpStarting:
		return "starting"
	case OpRunning:
		return "up"
	case OpStopping:
		return "stopping"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// ServerState is one row of `show servers state`.
type ServerState struct {
	Backend string
	Name    string
	ID      int
	// Addr is the parsed srv_addr; zero when HAProxy shows something that is
	// not an IP (an unresolved FQDN server, for example).
	Addr   netip.Addr
	Port   int
	Admin  AdminFlags
	Op     OpState
	Weight int // srv_uweight, the weight `set server ... weight` sets
}

// State is the server's effective administrative state.
func (s ServerState) State() State { return s.Admin.State() }

// Endpoint returns "addr:port" in HAProxy's spelling (IPv6 in brackets).
func (s ServerState) Endpoint() string {
	if !s.Addr.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(s.Addr, uint16(s.Port)).String()
}

var serverStateColumns = []string{"be_name", "srv_id", "srv_name", "srv_addr", "srv_op_state", "srv_admin_state", "srv_uweight", "srv_port"}

// ParseServersState parses the answer to `show servers state`. Columns are
// found by the header's names, so extra columns in newer versions are fine.
func ParseServersState(answer string) ([]ServerState, error) {
	lines := strings.Split(strings.TrimRight(answer, "\n"), "\n")
	if len(lines) == 0 || lines[0] != "1" {
		return nil, fmt.Errorf("%w: servers state: want format version 1, got %q", ErrProtocol, firstLine(answer))
	}
	if len(lines) == 1 {
		return nil, nil
	}
	if !strings.HasPrefix(lines[1], "# ") {
		return nil, fmt.Errorf("%w: servers state: missing header line", ErrProtocol)
	}
	col := map[string]int{}
	for i, name := range strings.Fields(lines[1][2:]) {
		col[name] = i
	}
	for _, name := range serverStateColumns {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("%w: servers state: header has no %s column", ErrProtocol, name)
		}
	}
	out := make([]ServerState, 0, len(lines)-2)
	fields := make([]string, 0, len(col))
	for n, line := range lines[2:] {
		if line == "" || line[0] == '#' {
			continue
		}
		fields = appendFields(fields[:0], line)
		s, err := parseServerRow(fields, col)
		if err != nil {
			return nil, fmt.Errorf("%w: servers state line %d: %v", ErrProtocol, n+3, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// appendFields is strings.Fields for single-space separated rows, without
// allocating a new slice per line.
func appendFields(dst []string, line string) []string {
	for {
		line = strings.TrimLeft(line, " ")
		if line == "" {
			return dst
		}
		i := strings.IndexByte(line, ' ')
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i:]
	}
}

func parseServerRow(f []string, col map[string]int) (ServerState, error) {
	get := func(name string) string {
		if i := col[name]; i < len(f) {
			return f[i]
		}
		return ""
	}
	num := func(name string) (int, error) {
		v, err := strconv.Atoi(get(name))
		if err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		return v, nil
	}
	var s ServerState
	var err error
	s.Backend, s.Name = get("be_name"), get("srv_name")
	if s.Backend == "" || s.Name == "" {
		return s, fmt.Errorf("row has %d fields, fewer than the header", len(f))
	}
	if s.ID, err = num("srv_id"); err != nil {
		return s, err
	}
	if s.Port, err = num("srv_port"); err != nil {
		return s, err
	}
	if s.Weight, err = num("srv_uweight"); err != nil {
		return s, err
	}
	op, err := num("srv_op_state")
	if err != nil {
		return s, err
	}
	if op < 0 || op > 3 {
		return s, fmt.Errorf("srv_op_state %d unknown", op)
	}
	s.Op = OpState(op)
	admin, err := num("srv_admin_state") // decimal, read as a bit mask
	if err != nil {
		return s, err
	}
	if admin < 0 || admin > 0xff {
		return s, fmt.Errorf("srv_admin_state %d out of range", admin)
	}
	s.Admin = AdminFlags(admin)
	if a, err := netip.ParseAddr(get("srv_addr")); err == nil {
		s.Addr = a.Unmap()
	}
	return s, checkRow(s)
}

// checkRow refuses values HAProxy never reports, so that a broken or hostile
// socket cannot feed hapctl a name or number it would act on. Names are
// checked for HAProxy's identifier characters only, not MaxNameLen: a user's
// own long backend name must not stop hapctl.
func checkRow(s ServerState) error {
	for _, name := range []string{s.Backend, s.Name} {
		for i := 0; i < len(name); i++ {
			if !isNameByte(name[i]) {
				return fmt.Errorf("name %q has character %q", clip([]byte(name), 64), name[i])
			}
		}
	}
	switch {
	case s.Port < 0 || s.Port > 65535:
		return fmt.Errorf("srv_port %d out of range", s.Port)
	case s.Weight < 0 || s.Weight > MaxWeight:
		return fmt.Errorf("srv_uweight %d out of range", s.Weight)
	}
	return nil
}

// Info holds the fields of `show info` hapctl uses.
type Info struct {
	Pid       int
	UptimeSec int
	Version   string
}

// ParseInfo parses the answer to `show info`.
func ParseInfo(answer string) (Info, error) {
	var in Info
	for _, line := range strings.Split(answer, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Pid":
			in.Pid, _ = strconv.Atoi(v)
		case "Uptime_sec":
			in.UptimeSec, _ = strconv.Atoi(v)
		case "Version":
			in.Version = v
		}
	}
	if in.Pid == 0 {
		return in, fmt.Errorf("%w: show info has no Pid", ErrProtocol)
	}
	return in, nil
}

// maxSessions bounds a session count in `show stat`: far beyond any real
// HAProxy, and small enough that sums cannot overflow.
const maxSessions = 1 << 40

// ParseSessions reads the answer to `show stat` into the sessions each
// server is serving or has queued (scur + qcur), by server name.
func ParseSessions(answer string) (map[string]int, error) {
	lines := strings.Split(strings.TrimRight(answer, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "# ") {
		return nil, fmt.Errorf("%w: show stat: missing header, got %q", ErrProtocol, firstLine(answer))
	}
	col := map[string]int{}
	for i, name := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		col[name] = i
	}
	for _, name := range []string{"svname", "scur", "qcur"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("%w: show stat: header has no %s column", ErrProtocol, name)
		}
	}
	out := make(map[string]int, len(lines)-1)
	for n, line := range lines[1:] {
		if line == "" {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) <= max(col["svname"], col["scur"], col["qcur"]) {
			return nil, fmt.Errorf("%w: show stat line %d: %d fields, fewer than the header", ErrProtocol, n+2, len(f))
		}
		total := 0
		for _, c := range []string{"scur", "qcur"} {
			if f[col[c]] == "" {
				continue
			}
			v, err := strconv.Atoi(f[col[c]])
			if err != nil {
				return nil, fmt.Errorf("%w: show stat line %d: %s: %v", ErrProtocol, n+2, c, err)
			}
			if v < 0 || v > maxSessions {
				return nil, fmt.Errorf("%w: show stat line %d: %s %d out of range", ErrProtocol, n+2, c, v)
			}
			total += v
		}
		out[f[col["svname"]]] = total
	}
	return out, nil
}
