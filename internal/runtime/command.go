package runtime

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Command is one runtime API command, built only by the functions in this
// file: each validates its arguments, so a Command holds nothing that could
// split into a second command or reach HAProxy unchecked.
type Command struct {
	text   string
	expect func(answer string) bool // success answers; nil means any answer is fine
}

// String returns the command as it is sent, without the newline.
func (c Command) String() string { return c.text }

// IsZero reports whether c was never built.
func (c Command) IsZero() bool { return c.text == "" }

// Check turns an answer to c into nil or a *CommandError, as Exec does; for
// fakes of the stats socket in tests.
func (c Command) Check(answer string) error { return c.check(answer) }

// check turns an answer into nil or a *CommandError.
func (c Command) check(answer string) error {
	if c.expect == nil || c.expect(answer) {
		return nil
	}
	return refused(c.text, answer)
}

func empty(answer string) bool { return strings.TrimSpace(answer) == "" }

func serverRef(backend, server string) (string, error) {
	if err := ValidName(backend); err != nil {
		return "", fmt.Errorf("backend: %w", err)
	}
	if err := ValidName(server); err != nil {
		return "", fmt.Errorf("server: %w", err)
	}
	return backend + "/" + server, nil
}

// SetAddr builds `set server B/S addr IP port P`.
func SetAddr(backend, server string, addr netip.Addr, port int) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	if err := ValidAddr(addr); err != nil {
		return Command{}, err
	}
	if err := ValidPort(port); err != nil {
		return Command{}, err
	}
	text := "set server " + ref + " addr " + addr.String() + " port " + strconv.Itoa(port)
	return Command{text: text, expect: addrChanged}, nil
}

// addrChanged recognises HAProxy's answers to a successful address change:
// "IP changed from ..." or "no need to change the addr, ..."; errors such as
// "Invalid addr ..." come back at the same severity, so match the text.
func addrChanged(answer string) bool {
	a := strings.TrimSpace(answer)
	return (strings.HasPrefix(a, "IP changed from") || strings.HasPrefix(a, "no need to change the addr")) &&
		!strings.Contains(a, "\n")
}

// SetState builds `set server B/S state ready|drain|maint`.
func SetState(backend, server string, state State) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	if !state.Valid() {
		return Command{}, fmt.Errorf("state %d is not ready, drain or maint", state)
	}
	return Command{text: "set server " + ref + " state " + state.String(), expect: empty}, nil
}

// SetWeight builds `set server B/S weight W` with an absolute weight.
func SetWeight(backend, server string, weight int) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	if err := ValidWeight(weight); err != nil {
		return Command{}, err
	}
	return Command{text: "set server " + ref + " weight " + strconv.Itoa(weight), expect: empty}, nil
}

// AddServer builds `add server B/S IP:PORT weight W [options]`: a dynamic
// server, which starts in maint. options are server keywords, checked by
// ValidOptions.
func AddServer(backend, server string, ep netip.AddrPort, weight int, options string) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	if err := ValidAddr(ep.Addr()); err != nil {
		return Command{}, err
	}
	if err := ValidPort(int(ep.Port())); err != nil {
		return Command{}, err
	}
	if err := ValidWeight(weight); err != nil {
		return Command{}, err
	}
	if err := ValidOptions(options); err != nil {
		return Command{}, err
	}
	text := "add server " + ref + " " + ep.String() + " weight " + strconv.Itoa(weight)
	if o := strings.Join(strings.Fields(options), " "); o != "" {
		text += " " + o
	}
	return Command{text: text, expect: answerIs("New server registered.")}, nil
}

// DelServer builds `del server B/S`; HAProxy deletes only a server in maint
// with no connection attached (ErrServerBusy otherwise).
func DelServer(backend, server string) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	return Command{text: "del server " + ref, expect: answerIs("Server deleted.")}, nil
}

// EnableHealth builds `enable health B/S`: a dynamic server's health checks
// do not start by themselves.
func EnableHealth(backend, server string) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	return Command{text: "enable health " + ref, expect: empty}, nil
}

// EnableAgent builds `enable agent B/S`, the agent-check counterpart of
// EnableHealth.
func EnableAgent(backend, server string) (Command, error) {
	ref, err := serverRef(backend, server)
	if err != nil {
		return Command{}, err
	}
	return Command{text: "enable agent " + ref, expect: empty}, nil
}

func answerIs(want string) func(string) bool {
	return func(a string) bool { return strings.TrimSpace(a) == want }
}

// ShowServersState builds `show servers state B`; parse its answer with
// ParseServersState.
func ShowServersState(backend string) (Command, error) {
	if err := ValidName(backend); err != nil {
		return Command{}, fmt.Errorf("backend: %w", err)
	}
	return Command{text: "show servers state " + backend, expect: isServersState}, nil
}

// ShowAllServersState builds `show servers state` for every backend.
func ShowAllServersState() Command {
	return Command{text: "show servers state", expect: isServersState}
}

func isServersState(answer string) bool {
	return answer == "1" || strings.HasPrefix(answer, "1\n")
}

// ShowInfo builds `show info`; parse its answer with ParseInfo.
func ShowInfo() Command {
	return Command{text: "show info", expect: func(a string) bool { return strings.HasPrefix(a, "Name: ") }}
}

// ShowStat builds `show stat <backend> 4 -1`: the stats of every server of
// one backend; parse its answer with ParseSessions.
func ShowStat(backend string) (Command, error) {
	if err := ValidName(backend); err != nil {
		return Command{}, fmt.Errorf("backend: %w", err)
	}
	return Command{text: "show stat " + backend + " 4 -1", expect: func(a string) bool { return strings.HasPrefix(a, "# pxname,") }}, nil
}
