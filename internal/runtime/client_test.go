package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fakeSocket serves one handler per connection on a unix socket.
func fakeSocket(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rt")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		_ = os.RemoveAll(dir)
	})
	return path
}

// sessionCommands are the commands of testdata/session.in, built by hand
// because one of them (an address HAProxy refuses) no builder would make.
func sessionCommands(t *testing.T) []Command {
	t.Helper()
	in := strings.Split(strings.TrimSuffix(readTestdata(t, "session.in"), "\n"), "\n")
	if in[0] != "prompt" {
		t.Fatalf("session.in must start with prompt")
	}
	var cmds []Command
	for _, line := range in[1:] {
		c := Command{text: line}
		switch {
		case strings.Contains(line, " addr "):
			c.expect = addrChanged
		case strings.HasPrefix(line, "show servers state"):
			c.expect = isServersState
		default:
			c.expect = empty
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// replay answers with the recorded output once the whole recorded input
// arrived, writing chunk bytes at a time.
func replay(t *testing.T, chunk int) func(net.Conn) {
	in, out := readTestdata(t, "session.in"), []byte(readTestdata(t, "session.out"))
	return func(c net.Conn) {
		got := make([]byte, len(in))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != in {
			t.Errorf("fake socket received %q (%v), want %q", got, err, in)
			return
		}
		for len(out) > 0 {
			n := min(chunk, len(out))
			if _, err := c.Write(out[:n]); err != nil {
				return
			}
			out = out[n:]
		}
		_, _ = io.Copy(io.Discard, c)
	}
}

func TestExecRecordedSession(t *testing.T) {
	for _, chunk := range []int{1, 7, 1 << 16} {
		t.Run("chunk"+itoa(chunk), func(t *testing.T) {
			c := &Client{Socket: fakeSocket(t, replay(t, chunk)), Timeout: 5 * time.Second}
			cmds := sessionCommands(t)
			res, err := c.Exec(context.Background(), cmds...)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(cmds) {
				t.Fatalf("%d results for %d commands", len(res), len(cmds))
			}
			wantErr := []error{nil, ErrNoSuchServer, nil, ErrRefused, nil, ErrRefused, ErrNoSuchBackend, ErrNoSuchBackend, nil}
			for i, r := range res {
				if r.Command.String() != cmds[i].String() {
					t.Errorf("result %d is for %q, want %q", i, r.Command, cmds[i])
				}
				if (wantErr[i] == nil) != (r.Err == nil) || (wantErr[i] != nil && !errors.Is(r.Err, wantErr[i])) {
					t.Errorf("%q: err = %v, want %v (answer %q)", r.Command, r.Err, wantErr[i], r.Answer)
				}
			}
			states, err := ParseServersState(res[4].Answer)
			if err != nil || len(states) != 3 || states[2].Port != 9009 {
				t.Fatalf("servers state from the pipelined answer: %+v %v", states, err)
			}
			if err := FirstErrors(res); err == nil || !strings.Contains(err.Error(), "No such server.") {
				t.Fatalf("FirstErrors = %v", err)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func showInfo(t *testing.T) []Command { return []Command{ShowInfo()} }

func TestExecSilentSocketTimesOut(t *testing.T) {
	before := goruntime.NumGoroutine()
	silent := fakeSocket(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	c := &Client{Socket: silent, Timeout: 150 * time.Millisecond}
	_, err := c.Exec(context.Background(), showInfo(t)...)
	var ce *ConnError
	if !errors.As(err, &ce) || !ce.Timeout() {
		t.Fatalf("err = %v, want a timeout *ConnError", err)
	}
	if !strings.Contains(err.Error(), silent) {
		t.Fatalf("error %q does not name the socket", err)
	}
	waitGoroutines(t, before+2) // the fake server's own accept loop and handler
}

func TestExecContextCancel(t *testing.T) {
	silent := fakeSocket(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	c := &Client{Socket: silent, Timeout: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(20 * time.Millisecond)
		cancel()
	}()
	_, err := c.Exec(ctx, showInfo(t)...)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestExecGarbage(t *testing.T) {
	tests := []struct {
		name   string
		answer string
	}{
		{"http", "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"},
		{"closed after prompt", "\n> "},
		{"nothing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := fakeSocket(t, func(c net.Conn) {
				readRequest(c)
				_, _ = io.WriteString(c, tt.answer)
			})
			c := &Client{Socket: sock, Timeout: 2 * time.Second}
			_, err := c.Exec(context.Background(), showInfo(t)...)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want ErrProtocol", err)
			}
		})
	}
}

func TestExecPartialAnswers(t *testing.T) {
	sock := fakeSocket(t, func(c net.Conn) {
		readRequest(c)
		_, _ = io.WriteString(c, "\n> \n> ") // prompt, then one empty answer, then close
	})
	st, _ := SetState("b", "s", StateReady)
	c := &Client{Socket: sock, Timeout: 2 * time.Second}
	res, err := c.Exec(context.Background(), st, st, st)
	if !errors.Is(err, ErrProtocol) || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("res = %+v, err = %v; want 1 good result and ErrProtocol", res, err)
	}
}

func TestExecDialError(t *testing.T) {
	c := &Client{Socket: filepath.Join(t.TempDir(), "missing.sock")}
	_, err := c.Exec(context.Background(), ShowInfo())
	var ce *ConnError
	if !errors.As(err, &ce) || ce.Op != "dial" {
		t.Fatalf("err = %v, want a dial *ConnError", err)
	}
}

func TestExecLargeBatchNoDeadlock(t *testing.T) {
	// The fake answers each line as it reads it and writes big answers, like
	// HAProxy: the client must read while it writes.
	big := strings.Repeat("x", 4096)
	sock := fakeSocket(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		var pending []byte
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				line := string(pending[:i])
				pending = pending[i+1:]
				ans := "\n> "
				if line != "prompt" {
					ans = "Name: " + big + "\n\n> "
				}
				if _, err := io.WriteString(c, ans); err != nil {
					return
				}
			}
		}
	})
	cmds := make([]Command, 3000)
	for i := range cmds {
		cmds[i] = ShowInfo()
	}
	c := &Client{Socket: sock, Timeout: 20 * time.Second}
	res, err := c.Exec(context.Background(), cmds...)
	if err != nil || len(res) != len(cmds) {
		t.Fatalf("%d results, err %v", len(res), err)
	}
	if FirstErrors(res) != nil || len(res[2999].Answer) != len("Name: ")+len(big) {
		t.Fatalf("answers wrong: %v", FirstErrors(res))
	}
}

func TestExecRejectsZeroCommand(t *testing.T) {
	c := &Client{Socket: "/nonexistent"}
	if _, err := c.Exec(context.Background(), Command{}); err == nil || !strings.Contains(err.Error(), "zero Command") {
		t.Fatalf("err = %v", err)
	}
}

// readRequest reads the (small) request so that closing afterwards is a
// clean EOF for the client, not a reset.
func readRequest(c net.Conn) {
	buf := make([]byte, 4096)
	_, _ = c.Read(buf)
}

func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for goruntime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := goruntime.Stack(buf, true)
			t.Fatalf("%d goroutines, want at most %d:\n%s", goruntime.NumGoroutine(), max, buf[:n])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
