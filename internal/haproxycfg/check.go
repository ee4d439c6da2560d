package haproxycfg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	gosync "sync"
	"syscall"
	"time"

	"github.com/google/renameio"
	parser "github.com/haproxytech/client-native/v5/config-parser"
	"github.com/haproxytech/client-native/v5/config-parser/options"
	"github.com/haproxytech/client-native/v5/config-parser/types"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/slot"
)

// Parsed is client-native's reading of a config, used to check hapctl's
// edits and to learn about backends.
type Parsed struct {
	p    parser.Parser
	data []byte
}

// parseMu serialises parsing: client-native's parser writes a package
// variable (DefaultSectionName) while it reads a defaults section.
var parseMu gosync.Mutex

// parseTimeout bounds one reading by client-native's parser (a variable so
// that tests can shorten it).
var parseTimeout = 30 * time.Second

// newParser is client-native's parser (a variable so that a test can make
// it hang).
var newParser = func(data []byte) (parser.Parser, error) {
	return parser.New(options.Reader(bytes.NewReader(data)), options.UseListenSectionParsers)
}

// stuckParsers counts the parsers that never finished (under parseMu); at
// maxStuck Parse refuses to start more.
var stuckParsers int

const maxStuck = 2

// ErrParseStuck is client-native's parser not finishing a config.
var ErrParseStuck = errors.New("the haproxy config parser (client-native) did not finish")

// Parse reads a config with client-native's parser.
//
// client-native v5.1.15 loops forever on a server or default-server option
// it knows but cannot read: a keyword missing its value at the end of the
// line (`inter`), or a keyword followed by '(' (`check(x`). So the parser
// runs in a goroutine and Parse waits at most parseTimeout for it; past that
// it returns ErrParseStuck and the stuck goroutine is leaked, spinning, since
// nothing can stop it. Callers refuse to go on with such a file. The waiter,
// not the worker, holds parseMu: a stuck worker spins over the words of one
// server line and touches nothing shared again, so later parses may run.
func Parse(data []byte) (*Parsed, error) {
	parseMu.Lock()
	defer parseMu.Unlock()
	// The lines known to make it loop are refused before it starts, and
	// after maxStuck parsers got stuck on inputs nobody foresaw, every
	// parse is refused: each one spins a core until hapctl exits.
	if at := stuckLine(data); at != "" {
		return nil, fmt.Errorf("parsing haproxy config: %w: %s; check the file with `haproxy -c`", ErrParseStuck, at)
	}
	if stuckParsers >= maxStuck {
		return nil, fmt.Errorf("parsing haproxy config: %w %d times already; restart hapctl once haproxy.cfg passes `haproxy -c`",
			ErrParseStuck, stuckParsers)
	}
	type result struct {
		p   parser.Parser
		err error
	}
	done := make(chan result, 1)
	input := bytes.Clone(data) // the caller may reuse data once Parse gave up
	go func() {
		p, err := newParser(input)
		done <- result{p, err}
	}()
	timer := time.NewTimer(parseTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("parsing haproxy config: %w", r.err)
		}
		return &Parsed{p: r.p, data: data}, nil
	case <-timer.C:
		stuckParsers++
		where := ""
		if at := stuckLine(data); at != "" {
			where = "; " + at
		}
		return nil, fmt.Errorf("parsing haproxy config: %w within %s, as happens with a server or default-server "+
			"option missing its value (e.g. `inter` at the end of a line) or a keyword followed by '(' "+
			"(e.g. `check(x`)%s; check the file with `haproxy -c`", ErrParseStuck, parseTimeout, where)
	}
}

// serverLineOptions says where the options start on the lines whose options
// client-native reads one keyword at a time.
var serverLineOptions = map[string]int{"server": 3, "default-server": 1, "server-template": 4}

// stuckLine names the first line whose server options client-native cannot
// read (config.CheckServerKeywords), or returns "".
func stuckLine(data []byte) string {
	for i, l := range splitText(data).allLines() {
		if len(l.fields) == 0 {
			continue
		}
		at, ok := serverLineOptions[l.fields[0]]
		if !ok || len(l.fields) <= at {
			continue
		}
		if err := config.CheckServerKeywords(l.fields[at:]); err != nil {
			return fmt.Sprintf("line %d: %v", i+1, err)
		}
	}
	return ""
}

// Servers returns the server lines of a backend or listen section; false
// when there is no such section.
func (p *Parsed) Servers(backend string) ([]types.Server, bool) {
	for _, sec := range []parser.Section{parser.Backends, parser.Listen} {
		names, _ := p.p.SectionsGet(sec)
		if !slices.Contains(names, backend) {
			continue
		}
		data, err := p.p.Get(sec, backend, "server")
		if err != nil {
			return nil, true
		}
		servers, _ := data.([]types.Server)
		return servers, true
	}
	return nil, false
}

// OtherServersWarning says which server lines of a managed backend are not
// slots: hapctl leaves them alone, and they take traffic beside the slots
// (consul-template's lines during a move to hapctl, or a static fallback on
// purpose). "" when there are none.
func (p *Parsed) OtherServersWarning(backend string) string {
	servers, _ := p.Servers(backend)
	var names []string
	for _, s := range servers {
		if _, ok := slot.Index(s.Name); !ok {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	return fmt.Sprintf("backend %s has server lines that are not hapctl's slots (%s): hapctl leaves them alone and they take traffic beside the slots; delete them once the slots serve, unless they are there on purpose",
		backend, strings.Join(names, ", "))
}

// Verify checks, through client-native's parser, that every backend has
// its slot servers srv1..srvN: the line edits produced what they meant to.
func Verify(data []byte, specs []SlotSpec) error {
	p, err := Parse(data)
	if err != nil {
		return err
	}
	for _, spec := range specs {
		servers, ok := p.Servers(spec.Backend)
		if !ok {
			return fmt.Errorf("backend %s: not found after editing", spec.Backend)
		}
		have := map[int]bool{}
		for _, s := range servers {
			if n, ok := slot.Index(s.Name); ok {
				if have[n] {
					return fmt.Errorf("backend %s: server %s is declared twice", spec.Backend, s.Name)
				}
				have[n] = true
			}
		}
		for i := 1; i <= spec.Slots; i++ {
			if !have[i] {
				return fmt.Errorf("backend %s: slot %s missing after editing", spec.Backend, slot.Name(i))
			}
		}
	}
	return nil
}

// CheckTimeout bounds `haproxy -c`.
const CheckTimeout = 30 * time.Second

var alertPrefix = regexp.MustCompile(`^\[(ALERT|WARNING)\]\s*\(\d+\)\s*:\s*`)

// Check runs `haproxy -c -f path` and returns HAProxy's alerts when the
// config is refused.
func Check(ctx context.Context, binary, path string) error {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "-c", "-f", path).CombinedOutput()
	if err == nil {
		return nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("running %s -c: %w", binary, err)
	}
	var alerts []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "[ALERT]") {
			alerts = append(alerts, alertPrefix.ReplaceAllString(l, ""))
		}
	}
	if len(alerts) == 0 {
		alerts = []string{strings.TrimSpace(string(out))}
	}
	return &CheckError{Path: path, Alerts: alerts}
}

// CheckError is HAProxy refusing a config.
type CheckError struct {
	Path   string
	Alerts []string
}

func (e *CheckError) Error() string {
	alerts := e.Alerts
	if len(alerts) > 3 {
		alerts = append(alerts[:3:3], fmt.Sprintf("and %d more", len(e.Alerts)-3))
	}
	return "haproxy -c refused the config: " + strings.Join(alerts, "; ")
}

// WriteChecked writes data to path atomically, but only after `haproxy -c`
// accepted it: the candidate is a temporary file next to path (so relative
// paths in it resolve the same), renamed over path once checked. The file
// keeps its mode and owner. On any error path is untouched.
func WriteChecked(ctx context.Context, binary, path string, data []byte) error {
	return replaceFile(path, data, func(candidate string) error {
		return namedAs(Check(ctx, binary, candidate), candidate, path)
	})
}

// writeFile writes data to path atomically, keeping its mode and owner,
// without a check: for restoring a file as it was.
func writeFile(path string, data []byte) error { return replaceFile(path, data, nil) }

func replaceFile(path string, data []byte, check func(candidate string) error) error {
	// Replace the file a symlink points at, not the link itself.
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	mode, uid, gid := os.FileMode(0o644), -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	pf, err := renameio.TempFile(filepath.Dir(path), path)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() { _ = pf.Cleanup() }()
	if _, err := pf.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := pf.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err := pf.Chown(uid, gid); err != nil {
			return fmt.Errorf("writing %s: keeping its owner: %w", path, err)
		}
	}
	if check != nil {
		if err := check(pf.Name()); err != nil {
			return err
		}
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}

// CheckData runs `haproxy -c` on data written to a temporary file next to
// path, which is left alone.
func CheckData(ctx context.Context, binary, path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".hapctl-check-*.cfg")
	if err != nil {
		// The directory may not be writable (validate as a user): use /tmp.
		if f, err = os.CreateTemp("", "hapctl-check-*.cfg"); err != nil {
			return err
		}
	}
	defer func() { _ = os.Remove(f.Name()) }()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return namedAs(Check(ctx, binary, f.Name()), f.Name(), path)
}

// namedAs makes a check error of a candidate file name the file it stands
// for, which is the one the user knows.
func namedAs(err error, candidate, path string) error {
	var ce *CheckError
	if errors.As(err, &ce) {
		ce.Path = path
		for i, a := range ce.Alerts {
			ce.Alerts[i] = strings.ReplaceAll(a, candidate, path+" (new version)")
		}
	}
	return err
}
