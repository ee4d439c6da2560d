package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hapctl/hapctl/internal/testbed"
)

// slots is how many servers each system gets up front: hapctl's
// min_slots, and the DNS server-template's count. The churn's burst needs
// more.
const slots = 8

// system is one way of keeping an HAProxy backend in sync with Consul.
type system struct {
	name string
	// start brings up HAProxy serving a frontend from backend be_web, and
	// whatever keeps be_web in sync with the service web, talking to
	// Consul through w's proxies.
	start func(e *env, w *world) *lb
	// phase is how long a trial waits, at random from 0 to phase, before
	// each change: a system that acts on a timer (DNS resolution) must see
	// changes at random points of its period, not just after it acted.
	// Event-driven systems get changes back to back (0): an idle gap only
	// adds the machine's wake-up latency (measured: ≈ +1 ms p50 for hapctl
	// with a 0–20 ms gap, paid by Consul, hapctl and HAProxy alike).
	phase time.Duration
}

// lb is an HAProxy under test and the URL of its frontend.
type lb struct {
	h        *testbed.HAProxy
	port     int
	frontend string
}

// newLB prepares an HAProxy with a free frontend port; the system starts it.
func newLB(e *env) *lb {
	h := testbed.NewHAProxy(e)
	h.Quiet = true
	port := testbed.FreePort(e)
	return &lb{h: h, port: port, frontend: fmt.Sprintf("http://127.0.0.1:%d/", port)}
}

// haproxyConfig is the config every system's HAProxy starts from: the
// same global and defaults (as hapctl's example config has them), a
// frontend, and backend be_web with backend lines appended.
func haproxyConfig(h *testbed.HAProxy, port int, backend string) string {
	return h.Preamble() + fmt.Sprintf(`
frontend fe
    bind 127.0.0.1:%d
    default_backend be_web

backend be_web
    balance roundrobin
    retries 3
    option redispatch
%s`, port, backend)
}

// hapctlSystem runs hapctl: runtime API changes, growth by `add server`.
func hapctlSystem(bin string) system {
	return system{name: "hapctl", start: func(e *env, w *world) *lb {
		l := newLB(e)
		h := l.h
		h.Start(haproxyConfig(h, l.port, ""))
		apiAddr := fmt.Sprintf("127.0.0.1:%d", testbed.FreePort(e))
		d := startHapctl(e, bin, h.Dir, hapctlConfig(e, h, w.httpAddr, apiAddr,
			fmt.Sprintf("  - {name: be_web, service: web, min_slots: %d}\n", slots)), apiAddr)
		waitFor(e, 30*time.Second, "hapctl ready", d.ready)
		return l
	}}
}

// consulTemplateSystem runs consul-template rendering haproxy.cfg with one
// server line per passing instance, and reloading HAProxy through the
// master CLI on every change: the usual setup.
func consulTemplateSystem(bin string) system {
	return system{name: "consul-template", start: func(e *env, w *world) *lb {
		l := newLB(e)
		h := l.h
		tmpl := filepath.Join(h.Dir, "haproxy.cfg.ctmpl")
		testbed.WriteFile(e, tmpl, haproxyConfig(h, l.port, `{{- range service "web" }}
    server {{ .ID }} {{ .Address }}:{{ .Port }}
{{- end }}
`))
		ctConfig := func(name, command string) string {
			path := filepath.Join(h.Dir, name)
			testbed.WriteFile(e, path, fmt.Sprintf(`consul {
  address = %q
}
log_level = "warn"
template {
  source      = %q
  destination = %q
%s}
`, w.httpAddr, tmpl, h.ConfigPath, command))
			return path
		}
		// Render once, start HAProxy on it, then keep rendering and
		// reloading.
		if out, err := exec.Command(bin, "-config", ctConfig("render.hcl", ""), "-once").CombinedOutput(); err != nil {
			e.Fatalf("consul-template -once: %v\n%s", err, out)
		}
		h.Start("")
		// The master CLI refuses connections for a moment while a reload
		// re-executes the master, and consul-template exits when its
		// command fails: retry, as an operator's script would.
		reload := fmt.Sprintf("for i in 1 2 3 4 5 6 7 8 9 10; do echo reload | socat stdio unix-connect:%s && exit 0; sleep 0.05; done; exit 1", h.MasterSock)
		cfg := ctConfig("consul-template.hcl", fmt.Sprintf("  command     = [\"/bin/sh\", \"-c\", %q]\n", reload))
		testbed.StartProcess(e, "consul-template", bin, "-config", cfg)
		return l
	}}
}

// dnsSystem runs HAProxy's own DNS SRV discovery against Consul's DNS:
// server-template slots filled from _web._tcp.service.consul every period.
func dnsSystem(name string, period time.Duration) system {
	return system{name: name, phase: period, start: func(e *env, w *world) *lb {
		l := newLB(e)
		h := l.h
		p := period.String()
		h.Start(strings.Replace(haproxyConfig(h, l.port, fmt.Sprintf(
			"    server-template srv %d _web._tcp.service.consul resolvers consul resolve-prefer ipv4 init-addr none\n", slots)),
			"\nfrontend fe", fmt.Sprintf(`
resolvers consul
    nameserver consul %s
    accepted_payload_size 8192
    resolve_retries 3
    timeout resolve %s
    timeout retry %s
    hold valid %s
    hold obsolete 0s

frontend fe`, w.dnsAddr, p, p, p), 1))
		return l
	}}
}

// consulTemplateBin finds consul-template: --consul-template, then PATH,
// then where `scripts/setup.sh --bench` caches it.
func consulTemplateBin(e *env, flagged string) string {
	if flagged != "" {
		return flagged
	}
	if p, err := exec.LookPath("consul-template"); err == nil {
		return p
	}
	p := filepath.Join(testbed.CacheDir(), "consul-template-"+consulTemplateVersion, "consul-template")
	if _, err := os.Stat(p); err != nil {
		e.Fatalf("consul-template not found (%v): run scripts/setup.sh --bench, which installs and caches it", err)
	}
	return p
}

const consulTemplateVersion = "0.41.1"
