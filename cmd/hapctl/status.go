package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hapctl/hapctl/internal/api"
	"github.com/hapctl/hapctl/internal/slot"
)

func newStatusCmd() *cobra.Command {
	var (
		cf     clientFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "status [BACKEND] [-o table|json]",
		Short: "Show backends, slots, bound instances, states and drains",
		Long: `status asks the admin API of a running hapctl for its backends: every slot
with its address, weight, HAProxy admin and health state, the Consul instance
bound to it and any operator drain or maint; free slots as ranges on one line
(free: srv4-srv8). -o json prints the API's JSON as it is.`,
		Example: `  hapctl status
  hapctl status be_web
  hapctl status be_web -o json
  hapctl status --addr unix:/run/hapctl.sock`,
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		ValidArgsFunction: completeNames(&cf, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", output)}
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			path := "/v1/backends"
			if len(args) == 1 {
				path += "/" + url.PathEscape(args[0])
			}
			var raw json.RawMessage
			if _, err := c.call(cmd.Context(), http.MethodGet, path, nil, &raw); err != nil {
				return err
			}
			if output == "json" {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			var backends []api.Backend
			if len(args) == 1 {
				var b api.Backend
				err = json.Unmarshal(raw, &b)
				backends = []api.Backend{b}
			} else {
				var all api.BackendList
				err = json.Unmarshal(raw, &all)
				backends = all.Backends
			}
			if err != nil {
				return fmt.Errorf("the answer of %s is not what this hapctl expects (a different version?): %w", c.shown, err)
			}
			printStatus(cmd.OutOrStdout(), backends, time.Now())
			return nil
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// printStatus writes one block per backend: a summary line, a table of the
// slots in use, free slots counted, drains of instances without a slot.
func printStatus(w io.Writer, backends []api.Backend, now time.Time) {
	for i, b := range backends {
		if i > 0 {
			fmt.Fprintln(w)
		}
		var free []string
		bound := 0
		for _, s := range b.Slots {
			switch {
			case s.Free:
				free = append(free, s.Name)
			case s.ServiceID != "":
				bound++
			}
		}
		growth := b.Growth
		if b.GrowthNote != "" {
			growth += " (" + b.GrowthNote + ")"
		}
		last := "never"
		if b.LastSync != nil {
			last = now.Sub(*b.LastSync).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "backend %s  service %s  slots %d (%d bound, %d free)  unplaced %d  invalid %d  growth %s  last sync %s\n",
			b.Name, b.Service, len(b.Slots), bound, len(free), len(b.Unplaced), len(b.Invalid), growth, last)
		if b.Guarded {
			fmt.Fprintln(w, "  EMPTY GUARD: consul reports no passing instance; the last set of servers stays in haproxy")
		}
		if b.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", b.Error)
		}
		if len(b.Slots) > len(free) {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  SERVER\tADDRESS\tWEIGHT\tADMIN\tHEALTH\tINSTANCE\tNODE\tOVERRIDE")
			for _, s := range b.Slots {
				if s.Free {
					continue
				}
				inst := s.ServiceID
				if s.Leaving {
					inst = "(leaving)"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, net.JoinHostPort(s.Address, strconv.Itoa(s.Port)),
					s.Weight, s.AdminState, s.OperState, dash(inst), dash(s.Node), overrideText(s.Override, now))
			}
			_ = tw.Flush()
		}
		if len(free) > 0 {
			fmt.Fprintf(w, "  free: %s\n", compactNames(free))
		}
		if len(b.Unplaced) > 0 {
			fmt.Fprintf(w, "  unplaced (no slot left, max_slots reached): %s\n", strings.Join(b.Unplaced, ", "))
		}
		for _, inv := range b.Invalid {
			fmt.Fprintf(w, "  invalid instance %s (node %s): %s\n", inv.ServiceID, inv.Node, inv.Reason)
		}
		for _, d := range b.Drains {
			if d.Server == "" {
				o := d.Override
				fmt.Fprintf(w, "  %s of %s, which has no slot: %s\n", o.State, d.ServiceID, overrideText(&o, now))
			}
		}
	}
}

func overrideText(o *api.Override, now time.Time) string {
	if o == nil {
		return "-"
	}
	s := o.State
	if o.By != "" {
		s += " by " + o.By
	}
	s += " " + now.Sub(o.At).Round(time.Second).String() + " ago"
	if o.Reason != "" {
		s += ": " + strconv.Quote(o.Reason)
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// compactNames turns srv4 srv5 srv6 srv9 into "srv4-srv6, srv9".
func compactNames(names []string) string {
	var parts []string
	num := func(s string) int { n, _ := slot.Index(s); return n }
	for i := 0; i < len(names); {
		j := i
		for j+1 < len(names) && num(names[j+1]) == num(names[j])+1 {
			j++
		}
		if j > i {
			parts = append(parts, names[i]+"-"+names[j])
		} else {
			parts = append(parts, names[i])
		}
		i = j + 1
	}
	return strings.Join(parts, ", ")
}
