package runtime

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Sentinel errors a *CommandError unwraps to, so callers can branch with errors.Is.
var (
	ErrNoSuchBackend = errors.New("no such backend")
	ErrNoSuchServer  = errors.New("no such server")
	ErrRefused       = errors.New("command refused")
	// ErrNotDynamic: the backend cannot take servers added at runtime (a
	// static balance algorithm, or a server option dynamic servers refuse).
	ErrNotDynamic = errors.New("backend cannot take dynamic servers")
	// ErrServerBusy: `del server` of a server that still has connections.
	ErrServerBusy = errors.New("server still has connections")
	// ErrReloadFailed: the master reports that a reload failed (the old
	// worker keeps running). Other reload errors leave the outcome unknown.
	ErrReloadFailed = errors.New("haproxy reload failed")
	// ErrServerExists: `add server` of a name the backend already has.
	ErrServerExists = errors.New("server already exists")
	// ErrProtocol means the socket answered something that is not a HAProxy
	// CLI answer: the connection closed early or the framing is wrong.
	ErrProtocol = errors.New("unexpected answer from the runtime socket")
)

// CommandError is HAProxy refusing one command: the command was delivered and
// answered, and the answer is not one of the command's success answers.
type CommandError struct {
	Command string
	Answer  string
	err     error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("haproxy refused %q: %s", e.Command, e.Answer)
}

func (e *CommandError) Unwrap() error { return e.err }

func refused(cmd, answer string) *CommandError {
	answer = strings.TrimSpace(answer)
	err := ErrRefused
	switch {
	case answer == "No such server.":
		err = ErrNoSuchServer
	case answer == "No such backend.", strings.HasPrefix(answer, "Can't find backend"):
		err = ErrNoSuchBackend
	case strings.Contains(answer, "must use a dynamic load balancing"),
		strings.Contains(answer, "not accepted for dynamic server"),
		strings.Contains(answer, "not supported for dynamic server"):
		err = ErrNotDynamic
	case strings.HasPrefix(answer, "Server still has connections"):
		err = ErrServerBusy
	case strings.HasPrefix(answer, "Already exists a server with the same name"):
		err = ErrServerExists
	}
	if answer == "" {
		answer = "(empty answer)"
	}
	return &CommandError{Command: cmd, Answer: firstLine(answer), err: err}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// ConnError is a failure to talk to a socket at all: dial, write, read or a
// deadline. The command batch it belongs to may have been applied in part.
type ConnError struct {
	Socket string
	Op     string
	Err    error
}

func (e *ConnError) Error() string {
	return fmt.Sprintf("haproxy socket %s: %s: %v", e.Socket, e.Op, e.Err)
}

func (e *ConnError) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a deadline.
func (e *ConnError) Timeout() bool { return errors.Is(e.Err, os.ErrDeadlineExceeded) }
