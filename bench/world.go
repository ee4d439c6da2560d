package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/hapctl/hapctl/internal/testbed"
)

// world is what every system under test gets: a fresh Consul dev agent,
// reached through counting proxies (HTTP and DNS) so that the requests each
// system makes can be counted, and the shared pool of HTTP backends.
type world struct {
	consul   *testbed.Consul
	httpAddr string // the counting HTTP proxy in front of Consul's API
	dnsAddr  string // the counting DNS relay in front of Consul's DNS
	http     atomic.Int64
	dns      atomic.Int64
	pool     *pool
}

func newWorld(e *env, p *pool) *world {
	// Consul's DNS answers at most 3 records over UDP by default, which
	// makes HAProxy's SRV discovery see a rotating subset of instances:
	// raise it, as anyone using DNS SRV with Consul has to.
	w := &world{consul: testbed.StartConsulDev(e, "-hcl", "dns_config { udp_answer_limit = 64 }"), pool: p}
	w.httpAddr = w.serveHTTPProxy(e)
	w.dnsAddr = w.serveDNSRelay(e)
	return w
}

// serveHTTPProxy relays TCP connections to Consul's HTTP API and counts
// the requests in them. A plain relay costs the system under test far less
// latency than an HTTP reverse proxy; the systems only send requests
// without a body, so each request is one header block ending in an empty
// line.
func (w *world) serveHTTPProxy(e *env) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", w.consul.Addr)
			if err != nil {
				_ = c.Close()
				continue
			}
			e.Cleanup(func() { _ = c.Close(); _ = up.Close() })
			go func() {
				_, _ = io.Copy(up, &requestCounter{r: c, n: &w.http})
				_ = up.Close()
			}()
			go func() {
				_, _ = io.Copy(c, up)
				_ = c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// requestCounter counts the "\r\n\r\n" ends of HTTP request headers read
// through it, across reads.
type requestCounter struct {
	r    io.Reader
	n    *atomic.Int64
	tail []byte // the last bytes of the previous read
}

func (rc *requestCounter) Read(p []byte) (int, error) {
	n, err := rc.r.Read(p)
	if n > 0 {
		buf := append(rc.tail, p[:n]...)
		rc.n.Add(int64(bytes.Count(buf, []byte("\r\n\r\n"))))
		rc.tail = append(rc.tail[:0], buf[max(0, len(buf)-3):]...)
	}
	return n, err
}

// serveDNSRelay relays UDP DNS queries to Consul and counts them.
func (w *world) serveDNSRelay(e *env) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		e.Fatal(err)
	}
	e.Cleanup(func() { _ = pc.Close() })
	var mu sync.Mutex
	upstream := map[string]net.Conn{}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			w.dns.Add(1)
			mu.Lock()
			up, ok := upstream[from.String()]
			if !ok {
				if up, err = net.Dial("udp", w.consul.DNS); err != nil {
					mu.Unlock()
					continue
				}
				upstream[from.String()] = up
				e.Cleanup(func() { _ = up.Close() })
				go func() {
					b := make([]byte, 65536)
					for {
						m, err := up.Read(b)
						if err != nil {
							return
						}
						_, _ = pc.WriteTo(b[:m], from)
					}
				}()
			}
			mu.Unlock()
			_, _ = up.Write(buf[:n])
		}
	}()
	return pc.LocalAddr().String()
}

// register registers backend i of the pool as instance id of service web,
// passing.
func (w *world) register(e *env, id string, i int) {
	w.consul.Register(&api.AgentServiceRegistration{ID: id, Name: "web", Address: w.pool.hosts[i], Port: w.pool.ports[i]}, api.HealthPassing)
}

// pool is a set of HTTP backends on loopback, up for the whole run; an
// instance leaving Consul keeps its server up (a graceful deploy), so a
// failed request is the load balancer's doing. Each backend has an address
// of its own in 127.0.1.0/24, as instances on separate hosts would: HAProxy's
// SRV discovery served only some of several instances sharing one address.
type pool struct {
	hosts []string
	ports []int
}

func newPool(e *env, n int) *pool {
	p := &pool{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok\n"))
	})
	for i := range n {
		host := fmt.Sprintf("127.0.1.%d", i+1)
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			e.Fatal(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		e.Cleanup(func() { _ = srv.Close() })
		p.hosts = append(p.hosts, host)
		p.ports = append(p.ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return p
}

func (p *pool) endpoint(i int) string { return net.JoinHostPort(p.hosts[i], strconv.Itoa(p.ports[i])) }

// load is a keep-alive HTTP load on a frontend: conns connections, each
// sending a request every interval. Requests are POSTs with an empty body:
// Go's client silently retries an idempotent request whose reused
// connection the server closed, which would hide exactly the errors
// reloads cause.
type load struct {
	mu        sync.Mutex
	latencies []time.Duration
	failed    int
	errs      map[string]int
	stop      context.CancelFunc
	done      sync.WaitGroup
}

func startLoad(frontend string, conns int, interval time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel, errs: map[string]int{}}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}}
	for range conns {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				start := time.Now()
				err := post(client, frontend)
				took := time.Since(start)
				l.mu.Lock()
				if err != nil {
					l.failed++
					l.errs[err.Error()]++
				} else {
					l.latencies = append(l.latencies, took)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func post(c *http.Client, target string) error {
	resp, err := c.Post(target, "text/plain", nil)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// finish stops the load and returns its latencies, failures and their
// reasons.
func (l *load) finish() ([]time.Duration, int, map[string]int) {
	l.stop()
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latencies, l.failed, l.errs
}
