// Command sample-backend is a small HTTP server for hapctl's demo and
// docker-compose setup. It answers every request with its name and, with
// --consul, registers itself as an instance of --service with a TTL check
// that it keeps passing, and deregisters when it stops.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

func main() {
	name := flag.String("name", "web-1", "instance name: the answer body and the Consul service ID")
	listen := flag.String("listen", "127.0.0.1:9001", "address to serve HTTP on")
	consulAddr := flag.String("consul", "", "Consul HTTP address to register in (empty: do not register)")
	service := flag.String("service", "web", "Consul service name")
	advertise := flag.String("advertise", "", "address to register (default: the host of --listen)")
	weight := flag.Int("weight", 1, "Consul Weights.Passing")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	var served atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n := served.Add(1)
			fmt.Fprintf(w, "hello from %s (request %d)\n", *name, n)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	log.Printf("%s serving on %s", *name, ln.Addr())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	deregistered := make(chan struct{})
	if *consulAddr != "" {
		if err := register(ctx, *consulAddr, *service, *name, *advertise, ln.Addr().(*net.TCPAddr), *weight, deregistered); err != nil {
			log.Fatalf("consul: %v", err)
		}
	} else {
		close(deregistered)
	}
	<-ctx.Done()
	// Leave Consul first, so that traffic moves away, then stop serving.
	select {
	case <-deregistered:
	case <-time.After(5 * time.Second):
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
}

// register adds the instance with a TTL check, keeps the check passing, and
// deregisters when ctx ends, closing done after that.
func register(ctx context.Context, addr, service, id, advertise string, la *net.TCPAddr, weight int, done chan<- struct{}) error {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	client, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	host := advertise
	if host == "" {
		host = la.IP.String()
	}
	checkID := "ttl-" + id
	reg := &api.AgentServiceRegistration{
		ID: id, Name: service, Address: host, Port: la.Port,
		Weights: &api.AgentWeights{Passing: weight, Warning: 1},
		Check:   &api.AgentServiceCheck{CheckID: checkID, TTL: "10s", Status: api.HealthPassing, DeregisterCriticalServiceAfter: "1m"},
	}
	agent := client.Agent()
	for {
		if err = agent.ServiceRegister(reg); err == nil {
			break
		}
		log.Printf("registering in consul at %s: %v (retrying)", addr, err)
		select {
		case <-ctx.Done():
			close(done)
			return nil
		case <-time.After(time.Second):
		}
	}
	log.Printf("registered %s as %s:%s in consul", id, host, strconv.Itoa(la.Port))
	go func() {
		defer close(done)
		tick := time.NewTicker(3 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				if err := agent.ServiceDeregister(id); err != nil {
					log.Printf("deregister %s: %v", id, err)
				} else {
					log.Printf("deregistered %s", id)
				}
				return
			case <-tick.C:
				if err := agent.UpdateTTL(checkID, "serving", api.HealthPassing); err != nil {
					log.Printf("check update: %v", err)
				}
			}
		}
	}()
	return nil
}
