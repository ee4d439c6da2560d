package config

import (
	"fmt"
	"strings"

	"github.com/hapctl/hapctl/internal/runtime"
)

// valueKeywords are the server keywords that take an argument: those HAProxy
// 2.6 documents (configuration.txt 5.2, and `haproxy -dKcfg`), the `usesrc`
// and `interface` parts of `source`, and the few of later versions that
// client-native's parser also reads (curves, sigalgs, client-sigalgs, shard,
// log-bufsize).
//
// The list must name exactly the keywords client-native reads as taking a
// value (TestServerKeywordsMatchClientNative): its parser, which hapctl uses
// to read haproxy.cfg, steps over a value the same way, so a line that passes
// CheckServerKeywords is walked word by word alike and cannot send it into
// its endless loop.
var valueKeywords = map[string]bool{
	"addr": true, "agent-addr": true, "agent-inter": true, "agent-port": true, "agent-send": true,
	"alpn": true, "ca-file": true, "check-alpn": true, "check-proto": true, "check-sni": true,
	"ciphers": true, "ciphersuites": true, "client-sigalgs": true, "cookie": true, "crl-file": true,
	"crt": true, "curves": true, "downinter": true, "error-limit": true, "fall": true,
	"fastinter": true, "id": true, "init-addr": true, "inter": true, "interface": true,
	"log-bufsize": true, "log-proto": true, "max-reuse": true, "maxconn": true, "maxqueue": true,
	"minconn": true, "namespace": true, "npn": true, "observe": true, "on-error": true,
	"on-marked-down": true, "on-marked-up": true, "pool-low-conn": true, "pool-max-conn": true,
	"pool-purge-delay": true, "port": true, "proto": true, "proxy-v2-options": true, "redir": true,
	"resolve-net": true, "resolve-opts": true, "resolve-prefer": true, "resolvers": true,
	"rise": true, "shard": true, "sigalgs": true, "slowstart": true, "sni": true, "socks4": true,
	"source": true, "ssl-max-ver": true, "ssl-min-ver": true, "tcp-ut": true, "track": true,
	"usesrc": true, "verify": true, "verifyhost": true, "weight": true, "ws": true,
}

// parenKeywords are written with an argument in parentheses, e.g.
// `set-proxy-v2-tlv-fmt(<id>) <fmt>` (HAProxy 3.x); client-native loops
// forever on most ways of writing them wrong, so server_options holds none.
var parenKeywords = []string{"set-proxy-v2-tlv-fmt"}

// CheckServerOptions checks the text appended to every slot's server line:
// plain words without the keywords hapctl owns (runtime.ValidOptions), and
// every keyword that takes a value followed by one (CheckServerKeywords).
// `haproxy -c` checks the keywords themselves.
func CheckServerOptions(opts string) error {
	if err := runtime.ValidOptions(opts); err != nil {
		return err
	}
	if err := CheckServerKeywords(strings.Fields(opts)); err != nil {
		return fmt.Errorf("%q: %w", opts, err)
	}
	return nil
}

// CheckServerKeywords walks the words of server options as HAProxy does: a
// keyword that takes a value must have one, and a '(' may appear only in a
// value (`sni req.hdr(host)`), never in a keyword (`check(x`). Such words are
// errors for HAProxy too, and client-native's parser loops forever on them.
func CheckServerKeywords(words []string) error {
	for i := 0; i < len(words); i++ {
		w := words[i]
		if strings.Contains(w, "(") {
			return fmt.Errorf("%q is not a server keyword: '(' may appear only in a keyword's value", w)
		}
		for _, k := range parenKeywords {
			if strings.HasPrefix(w, k) {
				return fmt.Errorf("%q is not supported in server_options", w)
			}
		}
		if valueKeywords[w] {
			if i+1 == len(words) {
				return fmt.Errorf("%q takes a value and none follows it", w)
			}
			i++ // the value
		}
	}
	return nil
}
