package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// DefaultTimeout bounds one batch on the socket: dial, write and every answer.
const DefaultTimeout = 5 * time.Second

// maxAnswer bounds one answer (`show servers state` for 20k servers is ~2 MB).
const maxAnswer = 64 << 20

// promptDelim ends every answer in prompt mode: the body (empty, or ending in
// a newline) followed by "\n> ".
var promptDelim = []byte("\n> ")

// Client talks to one HAProxy stats socket at level admin. It is safe for
// concurrent use; each Exec uses its own connection.
type Client struct {
	// Socket is the path of the unix socket.
	Socket string
	// Timeout bounds each Exec; 0 means DefaultTimeout. A context deadline
	// that comes sooner wins.
	Timeout time.Duration
}

// Result is the outcome of one command of a batch.
type Result struct {
	Command Command
	Answer  string
	// Err is a *CommandError when HAProxy refused the command.
	Err error
}

// Exec sends cmds on one connection, pipelined in prompt mode, and reads and
// checks every answer. HAProxy runs each command whatever the others answer,
// so a refused command shows up in its Result, not in the returned error.
// The returned error (a *ConnError or ErrProtocol) means the conversation
// failed: results then holds the answers read before the failure, and the
// commands after them may or may not have run.
func (c *Client) Exec(ctx context.Context, cmds ...Command) ([]Result, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	var req bytes.Buffer
	req.WriteString("prompt\n")
	for _, cmd := range cmds {
		if cmd.IsZero() {
			return nil, errors.New("runtime: Exec given a zero Command")
		}
		req.WriteString(cmd.text)
		req.WriteByte('\n')
	}

	conn, err := c.dial(ctx)
	if err != nil {
		return nil, err
	}
	written := make(chan error, 1)
	defer func() {
		_ = conn.Close()
		<-written // the writer ends once the connection is closed
	}()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// Write while reading: HAProxy stops reading commands while its answers
	// are not read, so a large batch written first would deadlock.
	go func() {
		_, err := conn.Write(req.Bytes())
		written <- err
	}()

	fr := framer{r: conn}
	if _, err := fr.next(); err != nil { // the answer to "prompt" itself
		return nil, c.readErr(ctx, err)
	}
	results := make([]Result, 0, len(cmds))
	for _, cmd := range cmds {
		answer, err := fr.next()
		if err != nil {
			return results, c.readErr(ctx, err)
		}
		results = append(results, Result{Command: cmd, Answer: answer, Err: cmd.check(answer)})
	}
	return results, nil
}

// Run is Exec for callers that want one error: the conversation's, or else
// every refused command's, joined.
func (c *Client) Run(ctx context.Context, cmds ...Command) ([]Result, error) {
	results, err := c.Exec(ctx, cmds...)
	if err != nil {
		return results, err
	}
	return results, FirstErrors(results)
}

// FirstErrors joins the errors of refused commands (at most 5, then a count).
func FirstErrors(results []Result) error {
	var errs []error
	n := 0
	for _, r := range results {
		if r.Err == nil {
			continue
		}
		n++
		if len(errs) < 5 {
			errs = append(errs, r.Err)
		}
	}
	if n > len(errs) {
		errs = append(errs, fmt.Errorf("and %d more refused commands", n-len(errs)))
	}
	return errors.Join(errs...)
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	return dialSocket(ctx, c.Socket, c.timeout())
}

func dialSocket(ctx context.Context, path string, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &ConnError{Socket: path, Op: "dial", Err: ctx.Err()}
		}
		return nil, &ConnError{Socket: path, Op: "dial", Err: err}
	}
	if err := conn.SetDeadline(deadline); err != nil {
		_ = conn.Close()
		return nil, &ConnError{Socket: path, Op: "dial", Err: err}
	}
	return conn, nil
}

func (c *Client) readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if errors.Is(err, ErrProtocol) {
		return fmt.Errorf("haproxy socket %s: %w", c.Socket, err)
	}
	return &ConnError{Socket: c.Socket, Op: "read", Err: err}
}

// framer splits a prompt-mode stream into answers. It reuses one buffer
// (compacting it in place, growing it only for a large answer) and remembers
// how far it has searched, so a large answer arriving in many reads is
// scanned once.
type framer struct {
	r                io.Reader
	buf              []byte // unread data is buf[start:end]
	start, end, scan int
}

func (f *framer) next() (string, error) {
	if f.buf == nil {
		f.buf = make([]byte, 64<<10)
	}
	for {
		if i := bytes.Index(f.buf[f.scan:f.end], promptDelim); i >= 0 {
			stop := f.scan + i
			answer := string(bytes.TrimSuffix(f.buf[f.start:stop], []byte("\n")))
			f.start = stop + len(promptDelim)
			f.scan = f.start
			return answer, nil
		}
		f.scan = max(f.start, f.end-len(promptDelim)+1)
		if f.end-f.start > maxAnswer {
			return "", fmt.Errorf("%w: answer longer than %d bytes", ErrProtocol, maxAnswer)
		}
		if f.end == len(f.buf) {
			f.makeRoom()
		}
		n, err := f.r.Read(f.buf[f.end:])
		f.end += n
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("%w: connection closed before the answer ended (got %q)", ErrProtocol, clip(f.buf[f.start:f.end], 80))
			}
			return "", err
		}
	}
}

// makeRoom moves the unread data to the front of the buffer, and doubles
// the buffer when that frees less than half of it.
func (f *framer) makeRoom() {
	unread := f.end - f.start
	buf := f.buf
	if unread > len(f.buf)/2 {
		buf = make([]byte, 2*len(f.buf))
	}
	copy(buf, f.buf[f.start:f.end])
	f.scan -= f.start
	f.start, f.end, f.buf = 0, unread, buf
}

func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
