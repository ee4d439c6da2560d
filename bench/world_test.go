package main

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// TestRequestCounter counts request header ends however the stream is cut.
func TestRequestCounter(t *testing.T) {
	stream := "GET /v1/health/service/web?index=7&passing=1 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\nUser-Agent: y\r\n\r\n" +
		"GET /v1/kv/hapctl/drains/?recurse= HTTP/1.1\r\n\r\n"
	for _, cut := range []func(io.Reader) io.Reader{
		func(r io.Reader) io.Reader { return r },
		iotest.OneByteReader,
		iotest.HalfReader,
	} {
		var n atomic.Int64
		if _, err := io.Copy(io.Discard, &requestCounter{r: cut(strings.NewReader(stream)), n: &n}); err != nil {
			t.Fatal(err)
		}
		if n.Load() != 3 {
			t.Fatalf("counted %d requests, want 3", n.Load())
		}
	}
}
