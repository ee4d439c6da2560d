package config

import (
	"errors"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haproxytech/client-native/v5/config-parser/params"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const minimal = `
backends:
  - name: be_web
    service: web
`

func TestDefaults(t *testing.T) {
	t.Parallel()
	got, err := Parse([]byte(minimal), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Consul: Consul{Address: "127.0.0.1:8500", KVPrefix: "hapctl"},
		HAProxy: HAProxy{
			ConfigFile: "/etc/haproxy/haproxy.cfg", RuntimeSocket: "/run/haproxy/admin.sock",
			MasterSocket: "/run/haproxy/master.sock", StateFile: "/var/lib/haproxy/server-state",
			Binary: "/usr/sbin/haproxy", ReloadMinInterval: 2 * time.Second,
		},
		API: API{Listen: "127.0.0.1:9680"},
		Backends: []Backend{{
			Name: "be_web", Service: "web", MinSlots: 8, MaxSlots: 1024,
			Growth: "dynamic", ShrinkAfter: 10 * time.Minute, EmptyGuard: true,
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	e := env(map[string]string{"CONSUL_HTTP_ADDR": "10.1.1.1:8500", "CONSUL_HTTP_TOKEN": "envtok", "HAPCTL_TOKEN": "apitok"})
	got, err := Parse([]byte(minimal), e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Consul.Address != "10.1.1.1:8500" || got.Consul.Token != "envtok" || got.API.Token != "apitok" {
		t.Fatalf("env not applied: %+v %+v", got.Consul, got.API)
	}
	// A value in the file wins over the environment.
	got, err = Parse([]byte("consul:\n  address: 127.0.0.1:1234\n  token: filetok\napi:\n  token: fileapi\n"+minimal), e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Consul.Address != "127.0.0.1:1234" || got.Consul.Token != "filetok" || got.API.Token != "fileapi" {
		t.Fatalf("file did not win: %+v %+v", got.Consul, got.API)
	}
	// An empty value means the default, which is the environment: the documented
	// example config (haproxy/hapctl.yaml) says `token: ""`.
	got, err = Parse([]byte("consul:\n  address: \"\"\n  token: \"\"\napi:\n  listen: 0.0.0.0:9680\n  token: \"\"\n"+minimal), e)
	if err != nil {
		t.Fatal(err)
	}
	if got.Consul.Address != "10.1.1.1:8500" || got.Consul.Token != "envtok" || got.API.Token != "apitok" {
		t.Fatalf("empty values hid the environment: %+v %+v", got.Consul, got.API)
	}
}

// fullExample sets every key.
const fullExample = `
consul:
  address: http://127.0.0.1:8500
  datacenter: dc1
  allow_stale: true
  kv_prefix: /ops/hapctl/
haproxy:
  config_file: /tmp/h.cfg
  reload_min_interval: 500ms
api:
  listen: 0.0.0.0:9680
  token: s3cret
backends:
  - name: be_web
    service: web
    tags: [prod, v2]
    min_slots: 4
    max_slots: 64
    server_options: "check inter 2s"
    removal_grace: 30s
    growth: reload
    shrink_after: 1m
    empty_guard: false
`

func TestFullExample(t *testing.T) {
	t.Parallel()
	src := fullExample
	got, err := Parse([]byte(src), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	b := got.Backends[0]
	want := Backend{Name: "be_web", Service: "web", Tags: []string{"prod", "v2"}, MinSlots: 4, MaxSlots: 64,
		ServerOptions: "check inter 2s", RemovalGrace: 30 * time.Second, Growth: "reload", ShrinkAfter: time.Minute}
	if !reflect.DeepEqual(b, want) {
		t.Fatalf("backend = %+v\nwant      %+v", b, want)
	}
	if got.Consul.KVPrefix != "ops/hapctl" || !got.Consul.AllowStale || got.HAProxy.ReloadMinInterval != 500*time.Millisecond {
		t.Fatalf("consul/haproxy = %+v %+v", got.Consul, got.HAProxy)
	}
}

func TestValidationMessages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		src  string
		want []string // each must appear in the error
	}{
		{"empty file", ``, []string{"config is empty"}},
		{"no backends", "consul:\n  address: 127.0.0.1:8500\n", []string{"backends: at least one backend is needed"}},
		{"unknown top key", "backend:\n  - name: x\n", []string{`line 1: unknown key "backend" in the top level`}},
		{"unknown backend key", minimal + "    min_slot: 3\n", []string{`line 5: unknown key "min_slot" in a backend`}},
		{"unknown consul key", "consul:\n  tokn: x\n" + minimal, []string{`line 2: unknown key "tokn" in consul`}},
		{"bad duration", minimal + "    removal_grace: soon\n", []string{"line 5", "duration"}},
		{"bad yaml", "backends: [\n", []string{"invalid YAML"}},
		{"min slots zero", minimal + "    min_slots: 0\n", []string{"backends[0] (be_web).min_slots: must be at least 1, got 0"}},
		{"min above max", minimal + "    min_slots: 16\n    max_slots: 8\n", []string{"backends[0] (be_web).max_slots: 8 is below min_slots 16"}},
		{"max too big", minimal + "    max_slots: 100000\n", []string{"max_slots: must be between 1 and 65536, got 100000"}},
		{"bad growth", minimal + "    growth: lazy\n", []string{`growth: "lazy" is not "dynamic" or "reload"`}},
		{"negative grace", minimal + "    removal_grace: -1s\n", []string{"removal_grace: must not be negative"}},
		{"bad name", "backends:\n  - name: \"be web\"\n    service: web\n", []string{`backends[0] (be web).name: name "be web" has character ' '`}},
		{"name with semicolon", "backends:\n  - name: \"be;x\"\n    service: web\n", []string{`has character ';'`}},
		{"no service", "backends:\n  - name: be_web\n", []string{"backends[0] (be_web).service: is empty"}},
		{"bad service", "backends:\n  - name: be_web\n    service: \"web/x\"\n", []string{`service: "web/x" may hold only`}},
		{"duplicate", minimal + "  - name: be_web\n    service: api\n", []string{`backends[1] (be_web).name: "be_web" is also backends[0]`}},
		{"empty tag", minimal + "    tags: [\"\"]\n", []string{"backends[0] (be_web).tags[0]"}},
		{"options semicolon", minimal + "    server_options: \"check; shutdown\"\n", []string{"server_options", `';'`}},
		{"options newline", minimal + "    server_options: \"check\\nbackend x\"\n", []string{"server_options", "non-printable"}},
		{"options comment", minimal + "    server_options: \"check # x\"\n", []string{"server_options", `'#'`}},
		{"options disabled", minimal + "    server_options: \"check disabled\"\n", []string{`"disabled" is not allowed here`}},
		{"options weight", minimal + "    server_options: \"weight 10\"\n", []string{`"weight" is not allowed here`}},
		{"consul scheme", "consul:\n  address: ftp://x\n" + minimal, []string{`consul.address: "ftp://x": scheme must be http, https or unix`}},
		{"consul no port", "consul:\n  address: consul.local\n" + minimal, []string{"consul.address", "not host:port"}},
		{"kv prefix", "consul:\n  kv_prefix: \"a b\"\n" + minimal, []string{"consul.kv_prefix"}},
		{"reload interval", "haproxy:\n  reload_min_interval: -2s\n" + minimal, []string{"haproxy.reload_min_interval: must not be negative"}},
		{"public api without token", "api:\n  listen: 0.0.0.0:9680\n" + minimal, []string{"api.listen: 0.0.0.0:9680 is not a loopback address and no token is set"}},
		{"all interfaces without token", "api:\n  listen: \":9680\"\n" + minimal, []string{"api.listen", "not a loopback address"}},
		{"api garbage", "api:\n  listen: nowhere\n" + minimal, []string{"api.listen", "host:port or unix:/path"}},
		{"api token control on unix", "api:\n  listen: unix:/run/h.sock\n  token: \"a\\nb\"\n" + minimal, []string{"api.token: contains control characters"}},
		{"api unix path control", "api:\n  listen: \"unix:/run/a\\nb\"\n" + minimal, []string{`api.listen: "unix:/run/a\nb": the socket path contains control characters`}},
		{"consul unix control", "consul:\n  address: \"unix://a\\nb\"\n" + minimal, []string{`consul.address: "unix://a\nb": the socket path contains control characters`}},
		{"several problems at once", "backends:\n  - name: \"\"\n    min_slots: -1\n", []string{"name: name is empty", "service: is empty", "min_slots: must be at least 1, got -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.src), env(nil))
			if err == nil {
				t.Fatal("config accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestServerOptionsKeywords: a keyword that takes a value must have one, and
// '(' is only for values, or client-native's parser loops forever on the
// slot line (haproxycfg.Parse).
func TestServerOptionsKeywords(t *testing.T) {
	t.Parallel()
	for opts, want := range map[string]string{
		"check inter":                       `backends[0] (be_web).server_options: "check inter": "inter" takes a value and none follows it`,
		"inter":                             `"inter" takes a value and none follows it`,
		"check maxconn 10 fall":             `"fall" takes a value and none follows it`,
		"source 10.0.0.1 usesrc":            `"usesrc" takes a value and none follows it`,
		"check(x":                           `"check(x" is not a server keyword: '(' may appear only in a keyword's value`,
		"check inter(2s)":                   `"inter(2s)" is not a server keyword`,
		"set-proxy-v2-tlv-fmt(0x20) x":      `"set-proxy-v2-tlv-fmt(0x20)" is not a server keyword`,
		"set-proxy-v2-tlv-fmt x":            `"set-proxy-v2-tlv-fmt" is not supported in server_options`,
		"check inter 2s sni":                `"sni" takes a value and none follows it`,
		"sni req.hdr(host) check":           "",
		"cookie inter check":                "",
		"check inter 2s fall 3 rise 2":      "",
		"source 10.0.0.1 usesrc client":     "",
		"ssl verify none ca-file /etc/ca.p": "",
	} {
		_, err := Parse([]byte(minimal+"    server_options: \""+opts+"\"\n"), env(nil))
		switch {
		case want == "" && err != nil:
			t.Errorf("%q refused: %v", opts, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: error %v, want %q", opts, err, want)
		}
	}
}

// TestServerKeywordsMatchClientNative checks valueKeywords against
// client-native's parser: every keyword of ours is one it reads with a
// value (by its behaviour), and every keyword it reads with a value is ours
// (from its table, read from its source in the module cache), so that both
// walk a line alike and CheckServerKeywords catches every word it would loop
// on.
func TestServerKeywordsMatchClientNative(t *testing.T) {
	t.Parallel()
	for kw := range valueKeywords {
		got := params.ParseServerOptions([]string{kw, "x"})
		if len(got) != 1 || got[0].String() != kw+" x" {
			t.Errorf("client-native does not read %q as taking a value: %v", kw, got)
		}
	}
	kinds := clientNativeServerKeywords(t)
	for kw, kind := range kinds {
		switch kind {
		case "ServerOptionWord":
			if CheckServerKeywords([]string{kw + "(x"}) == nil {
				t.Errorf("%q accepted", kw+"(x")
			}
		case "ServerOptionValue":
			if !valueKeywords[kw] {
				t.Errorf("client-native reads %q with a value: add it to valueKeywords", kw)
			}
		case "ServerOptionIDValue":
			if CheckServerKeywords([]string{kw, "x"}) == nil || CheckServerKeywords([]string{kw + "(1)", "x"}) == nil {
				t.Errorf("%q (written %s(<id>) <value>) accepted", kw, kw)
			}
		default:
			t.Errorf("client-native keyword %q is a %s, which this test does not know", kw, kind)
		}
	}
}

// clientNativeServerKeywords reads client-native's table of server
// keywords from its source: keyword -> the type of option it parses into.
func clientNativeServerKeywords(t *testing.T) map[string]string {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/haproxytech/client-native/v5").Output()
	if err != nil {
		t.Skipf("client-native's source not found: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(dir)), "config-parser", "params", "server-options.go")
	file, err := goparser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(file, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "serverOptionFactoryMethods" || len(vs.Values) != 1 {
			return true
		}
		for _, e := range vs.Values[0].(*ast.CompositeLit).Elts {
			kv := e.(*ast.KeyValueExpr)
			kw, _ := strconv.Unquote(kv.Key.(*ast.BasicLit).Value)
			ret := kv.Value.(*ast.FuncLit).Body.List[0].(*ast.ReturnStmt)
			lit := ret.Results[0].(*ast.UnaryExpr).X.(*ast.CompositeLit)
			out[kw] = lit.Type.(*ast.Ident).Name
		}
		return false
	})
	if len(out) < 50 {
		t.Fatalf("read only %d server keywords from %s", len(out), path)
	}
	return out
}

func TestAcceptedEdgeCases(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"unix api":            "api:\n  listen: unix:/run/hapctl.sock\n" + minimal,
		"localhost api":       "api:\n  listen: localhost:9680\n" + minimal,
		"ipv6 loopback api":   "api:\n  listen: \"[::1]:9680\"\n" + minimal,
		"public with token":   "api:\n  listen: 0.0.0.0:9680\n  token: t\n" + minimal,
		"unix consul":         "consul:\n  address: unix:///run/consul.sock\n" + minimal,
		"zero shrink":         minimal + "    shrink_after: 0s\n",
		"colon in name":       "backends:\n  - name: be:web.v2-x\n    service: web\n",
		"min equals max":      minimal + "    min_slots: 4\n    max_slots: 4\n",
		"options with quotes": minimal + "    server_options: check inter 2s fall 2 rise 3 maxconn 100\n",
	} {
		if _, err := Parse([]byte(src), env(nil)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "hapctl.yaml")
	if err := os.WriteFile(path, []byte("backends:\n  - name: be_web\n    min_slots: 0\n    service: web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	var ce *Error
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), path+": invalid config: ") {
		t.Fatalf("err = %v, want an *Error prefixed with the path", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Fatalf("missing file: err = %v", err)
	}
}
