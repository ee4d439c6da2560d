package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hapctl/hapctl/internal/api"
)

// defaultAddr is where the CLI finds the admin API without --addr or
// HAPCTL_ADDR.
const defaultAddr = "http://127.0.0.1:9680"

// clientFlags are the flags of every subcommand that talks to the API.
type clientFlags struct {
	addr    string
	token   string
	timeout time.Duration
}

func (f *clientFlags) register(cmd *cobra.Command) {
	addr := os.Getenv("HAPCTL_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	cmd.Flags().StringVar(&f.addr, "addr", addr, "admin API address: http://host:port or unix:/path (env HAPCTL_ADDR)")
	// The token's default is not shown in --help: it is read at call time.
	cmd.Flags().StringVar(&f.token, "token", "", "API token for drain, undrain and maint (env HAPCTL_TOKEN)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 15*time.Second, "how long to wait for the API")
}

// apiClient calls hapctl's admin API.
type apiClient struct {
	base  string // http://host:port
	shown string // the address as the user gave it, for messages
	token string
	http  *http.Client
}

func (f *clientFlags) client() (*apiClient, error) {
	c := &apiClient{shown: f.addr, token: f.token}
	if c.token == "" {
		c.token = os.Getenv("HAPCTL_TOKEN")
	}
	tr := &http.Transport{}
	switch {
	case strings.HasPrefix(f.addr, "unix:"):
		path := strings.TrimPrefix(f.addr, "unix:")
		if path == "" {
			return nil, usageError{errors.New("--addr unix: needs a socket path")}
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://hapctl"
	case strings.HasPrefix(f.addr, "http://"), strings.HasPrefix(f.addr, "https://"):
		base, err := baseURL(f.addr)
		if err != nil {
			return nil, err
		}
		c.base = base
	default:
		_, _, perr := net.SplitHostPort(f.addr)
		base, err := baseURL("http://" + f.addr)
		if perr != nil || err != nil {
			return nil, usageError{fmt.Errorf("--addr %q: want http://host:port or unix:/path", f.addr)}
		}
		c.base = base
	}
	c.http = &http.Client{Transport: tr, Timeout: f.timeout}
	return c, nil
}

// baseURL checks an http(s) address: a host, an optional port, nothing
// else (a path, query or fragment would send the API's paths elsewhere).
func baseURL(addr string) (string, error) {
	bad := func(why string) error {
		return usageError{fmt.Errorf("--addr %q: %s; want http://host:port or unix:/path", addr, why)}
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil:
		return "", bad("not a URL")
	case u.Hostname() == "":
		return "", bad("no host")
	case u.User != nil:
		return "", bad("credentials go in --token, not the address")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "" || strings.Contains(addr, "#"):
		return "", bad("only a host and port are allowed")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", bad("port out of range")
		}
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host}).String(), nil // re-escapes an IPv6 zone
}

// call sends a request and decodes a 2xx answer into out (raw JSON into
// *json.RawMessage). Other answers become the API's error message.
func (c *apiClient) call(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach hapctl at %s: %v (is hapctl daemon running there? set --addr or HAPCTL_ADDR)", c.shown, unwrapURL(err))
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading the answer of %s: %w", c.shown, err)
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error string `json:"error"`
		}
		var msg string
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		} else {
			// Not hapctl's {"error": ...}: say what answered, and a little
			// of what it said.
			body := strings.TrimSpace(string(data))
			if len(body) > 200 {
				body = body[:200] + "…"
			}
			if body == "" {
				body = "an empty answer"
			}
			msg = fmt.Sprintf("%s answered %s: %s (is that hapctl's admin API? set --addr or HAPCTL_ADDR)", c.shown, resp.Status, body)
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			if c.token == "" {
				msg += " — pass --token or set HAPCTL_TOKEN"
			}
		case http.StatusForbidden:
			msg += " — check --token or HAPCTL_TOKEN"
		}
		return resp.StatusCode, errors.New(msg)
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return resp.StatusCode, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return resp.StatusCode, fmt.Errorf("the answer of %s is not what this hapctl expects (a different version?): %w", c.shown, err)
	}
	return resp.StatusCode, nil
}

func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func newOverrideCmd(action, short, example string) *cobra.Command {
	var (
		cf     clientFlags
		reason string
		by     string
	)
	use := action + " BACKEND SERVER"
	if action != api.ActionUndrain {
		use += " [--reason TEXT]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

SERVER is the slot's server name (srv3), the instance's address (10.0.0.5:8080)
or its Consul service ID. The override is kept in Consul KV under the
instance's service ID, so every hapctl attached to that Consul applies it, and
it survives restarts of hapctl and reloads of HAProxy. It follows the
instance, not the slot.`,
		Example:           example,
		Args:              usageArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: completeNames(&cf, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			body := map[string]string{}
			if reason != "" {
				body["reason"] = reason
			}
			if by != "" {
				body["by"] = by
			}
			path := "/v1/backends/" + url.PathEscape(args[0]) + "/servers/" + url.PathEscape(args[1]) + "/" + action
			var res api.OverrideResult
			if _, err := c.call(cmd.Context(), http.MethodPost, path, body, &res); err != nil {
				return err
			}
			who := res.Backend + "/" + res.ServiceID
			if res.Server != "" {
				who = res.Backend + "/" + res.Server + " (" + res.ServiceID + ")"
			}
			if res.Address != "" {
				who += " at " + res.Address
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is %s\n", who, res.State)
			if !res.Applied {
				fmt.Fprintf(cmd.ErrOrStderr(), "hapctl: warning: %s\n", res.Note)
			}
			return nil
		},
	}
	cf.register(cmd)
	if action != api.ActionUndrain {
		cmd.Flags().StringVar(&reason, "reason", "", "why, shown in status and kept with the override")
	}
	cmd.Flags().StringVar(&by, "by", "", "who asks, kept with the override (default: the caller's address)")
	return cmd
}

func newDrainCmd() *cobra.Command {
	return newOverrideCmd(api.ActionDrain, "Stop new traffic to one server; existing connections finish",
		`  hapctl drain be_web srv3 --reason "deploy 42"
  hapctl drain be_web 10.0.0.5:8080 --reason deploy --by alice
  HAPCTL_ADDR=unix:/run/hapctl.sock hapctl drain be_web web-3`)
}

func newMaintCmd() *cobra.Command {
	return newOverrideCmd(api.ActionMaint, "Take one server out completely",
		`  hapctl maint be_web srv3 --reason "disk failure"`)
}

func newUndrainCmd() *cobra.Command {
	return newOverrideCmd(api.ActionUndrain, "Lift a drain or maint set by an operator",
		`  hapctl undrain be_web srv3
  hapctl undrain be_web web-3   # also for an instance that has left Consul`)
}
