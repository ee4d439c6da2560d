// Command hapctl keeps HAProxy backends in sync with Consul through
// HAProxy's runtime API. See README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"
)

func main() {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	err := newRoot().Execute()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "hapctl:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

// usageError is a mistake in how hapctl was called: exit code 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }
