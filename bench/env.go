package main

import (
	"fmt"
	"os"
	"sync"
)

// env runs the testbed's components outside `go test`: it implements
// testbed.TB with a stack of cleanups run at the end (or on a fatal error),
// so that exactly the processes the bench started are stopped.
type env struct {
	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// fatal is the panic value Fatal and Fatalf unwind with; main recovers it.
type fatal struct{ msg string }

func (e *env) Helper() {}

func (e *env) Cleanup(f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cleanups = append(e.cleanups, f)
}

func (e *env) Failed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

func (e *env) Fatal(args ...any) { e.fail(fmt.Sprint(args...)) }

func (e *env) Fatalf(format string, args ...any) { e.fail(fmt.Sprintf(format, args...)) }

func (e *env) fail(msg string) {
	e.mu.Lock()
	e.failed = true
	e.mu.Unlock()
	panic(fatal{msg})
}

func (e *env) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (e *env) TempDir() string {
	dir, err := os.MkdirTemp("", "hapctl-bench")
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// close runs the cleanups, newest first.
func (e *env) close() {
	for {
		e.mu.Lock()
		n := len(e.cleanups)
		if n == 0 {
			e.mu.Unlock()
			return
		}
		f := e.cleanups[n-1]
		e.cleanups = e.cleanups[:n-1]
		e.mu.Unlock()
		f()
	}
}

// scope runs f with a child env whose cleanups run when f returns, so that
// one system's processes are gone before the next system starts.
func (e *env) scope(f func(*env)) {
	child := &env{}
	e.Cleanup(child.close) // a signal closes the parent: the child's processes go too
	defer child.close()
	defer func() {
		if r := recover(); r != nil {
			e.mu.Lock()
			e.failed = true
			e.mu.Unlock()
			panic(r)
		}
	}()
	f(child)
}
