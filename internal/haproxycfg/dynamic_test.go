package haproxycfg

import (
	"strings"
	"testing"
)

func TestDynamicSupport(t *testing.T) {
	t.Parallel()
	cfg := `
defaults
    mode http
    balance leastconn

backend be_default
    server a 10.0.0.1:80

backend be_rr
    balance roundrobin

backend be_static
    balance static-rr

backend be_source
    balance source

backend be_source_consistent
    balance source
    hash-type consistent

backend be_uri
    balance uri

defaults static
    balance static-rr

backend be_from_static from static
    mode http
`
	p, err := Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ backend, options, want string }{
		{"be_default", "", ""},
		{"be_rr", "check inter 2s", ""},
		{"be_static", "", "static-rr"},
		{"be_source", "", "map-based"},
		{"be_source_consistent", "check", ""},
		{"be_uri", "", "map-based"},
		{"be_from_static", "", "static-rr"},
		{"be_rr", "check cookie s1", `"cookie"`},
		{"be_rr", "resolvers dns", `"resolvers"`},
		{"be_new", "", "static-rr"}, // a new backend follows the last defaults
	}
	for _, tt := range tests {
		got := p.DynamicSupport(tt.backend, tt.options)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("DynamicSupport(%s, %q) = %q, want one containing %q", tt.backend, tt.options, got, tt.want)
		}
	}
	p3, err := Parse([]byte("defaults\n    default-server inter 3s\nbackend be_a\n    balance roundrobin\ndefaults plain\nbackend be_b from plain\n    default-server check\nbackend be_c from plain\n"))
	if err != nil {
		t.Fatal(err)
	}
	for b, want := range map[string]bool{"be_a": true, "be_b": true, "be_c": false, "be_missing": false} {
		if got := p3.DefaultServer(b); got != want {
			t.Errorf("DefaultServer(%s) = %v, want %v", b, got, want)
		}
	}
	p2, err := Parse([]byte("defaults named\n    balance static-rr\n\ndefaults\n    balance hdr(host)\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p2.DynamicSupport("be_new", ""); !strings.Contains(got, "balance hdr with map-based") {
		t.Errorf("new backend after an unnamed hdr() defaults: %q", got)
	}
}
