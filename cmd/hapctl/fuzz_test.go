package main

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzClientAddr checks --addr parsing: a refused address is a usage error,
// and an accepted one makes request URLs that reach the API's paths on the
// host given.
func FuzzClientAddr(f *testing.F) {
	for _, addr := range []string{
		defaultAddr, "https://hapctl.example:9680/", "http://[::1]:9680", "127.0.0.1:9680", "[2001:db8::1]:9680",
		"localhost:9680", "unix:/run/hapctl.sock", "unix:", "unix:relative.sock", "http://", "http://:9680", "ftp://x:1",
		"http://h:99999", "http://h:-1", "h:", ":9680", "nowhere", "http://h?x=1", "http://h#frag", "http://u:p@h:1",
		"http://h/prefix/", "a b:80", "h/x:80", "h:80;rm", "h:80\n", "http://h\r\n:80", "unix:/a\x00b", "\xff:80", "#0:", "",
	} {
		f.Add(addr)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		cf := clientFlags{addr: addr}
		c, err := cf.client()
		if err != nil {
			if !isUsage(err) || c != nil {
				t.Fatalf("--addr %q: %v is not a usage error", addr, err)
			}
			return
		}
		if c.shown != addr {
			t.Fatalf("--addr %q shown as %q", addr, c.shown)
		}
		if path, ok := strings.CutPrefix(addr, "unix:"); ok {
			if path == "" || c.base != "http://hapctl" {
				t.Fatalf("--addr %q: base %q", addr, c.base)
			}
			return
		}
		const path = "/v1/backends/be_web"
		u, err := url.Parse(c.base + path)
		if err != nil {
			t.Fatalf("--addr %q accepted, but %q is not a URL: %v", addr, c.base+path, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("--addr %q: request URL %v", addr, u)
		}
		if u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.Path != path {
			t.Fatalf("--addr %q: calls go to %v, not %s on a host", addr, u, path)
		}
	})
}
