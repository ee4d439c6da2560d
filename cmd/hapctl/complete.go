package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hapctl/hapctl/internal/api"
)

// completeTimeout bounds a completion's call to the admin API: a shell
// waiting on Tab must not hang on a hapctl that does not answer.
const completeTimeout = time.Second

// completeNames completes BACKEND (the first argument) with the backends of
// the running hapctl that --addr points at, and, with servers, SERVER (the
// second) with the backend's bound slots, their service IDs and the IDs of
// instances under a drain or maint. Without an answer it offers nothing.
func completeNames(cf *clientFlags, servers bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		const none = cobra.ShellCompDirectiveNoFileComp
		if len(args) > 1 || (len(args) == 1 && !servers) {
			return nil, none
		}
		c, err := cf.client()
		if err != nil {
			return nil, none
		}
		ctx, cancel := context.WithTimeout(context.Background(), completeTimeout)
		defer cancel()
		var names []string
		if len(args) == 0 {
			var all api.BackendList
			if _, err := c.call(ctx, http.MethodGet, "/v1/backends", nil, &all); err != nil {
				return nil, none
			}
			for _, b := range all.Backends {
				names = append(names, b.Name)
			}
		} else {
			var b api.Backend
			if _, err := c.call(ctx, http.MethodGet, "/v1/backends/"+url.PathEscape(args[0]), nil, &b); err != nil {
				return nil, none
			}
			for _, s := range b.Slots {
				if s.ServiceID != "" {
					names = append(names, s.Name, s.ServiceID)
				}
			}
			for _, d := range b.Drains {
				names = append(names, d.ServiceID)
			}
		}
		var out []string
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return slices.Compact(out), none
	}
}
