package consul

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/testbed"
)

func TestDrainKey(t *testing.T) {
	t.Parallel()
	key, err := DrainKey("/hapctl/", "be_web", "web-1:10.0.0.5:8080")
	if err != nil || key != "hapctl/drains/be_web/web-1:10.0.0.5:8080" {
		t.Fatalf("DrainKey = %q, %v", key, err)
	}
	for _, bad := range [][2]string{{"be/web", "a"}, {"be_web", "a/b"}, {"be_web", ""}, {"", "a"}, {"be_web", "a\nb"}, {"be_web", "../x"}} {
		if k, err := DrainKey("hapctl", bad[0], bad[1]); err == nil {
			t.Errorf("DrainKey(%q, %q) = %q, want an error", bad[0], bad[1], k)
		}
	}
}

func TestParseDrains(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	pairs := api.KVPairs{
		{Key: "hapctl/drains/"},
		{Key: "hapctl/drains/be_web/"},
		{Key: "hapctl/drains/be_web/web-1", Value: []byte(`{"state":"drain","reason":"deploy","by":"alice","at":"2026-11-21T10:00:00Z"}`)},
		{Key: "hapctl/drains/be_web/web-2", Value: []byte(`{"state":"maint","at":"2026-11-21T10:00:00Z"}`)},
		{Key: "hapctl/drains/be_api/api-1", Value: []byte(`{"state":"maint","at":"2026-11-21T10:00:00Z"}`)},
		// Broken ones are skipped with an error each.
		{Key: "hapctl/drains/be_web/web-3", Value: []byte(`{"state":"ready","at":"2026-11-21T10:00:00Z"}`)},
		{Key: "hapctl/drains/be_web/web-4", Value: []byte(`not json`)},
		{Key: "hapctl/drains/be_web/web-5", Value: []byte(`{"state":"drain","reason":"a\u0000b"}`)},
		{Key: "hapctl/drains/be_web/web-6", Value: []byte(`{"state":"drain","extra":1}`)},
		{Key: "hapctl/drains/be_web", Value: []byte(`{"state":"drain"}`)},
		{Key: "hapctl/drains/be_web/a/b", Value: []byte(`{"state":"drain"}`)},
		{Key: "hapctl/drains/be web/x", Value: []byte(`{"state":"drain"}`)},
	}
	got, errs := ParseDrains("hapctl", pairs)
	want := map[string]Overrides{
		"be_web": {"web-1": {State: runtime.StateDrain, Reason: "deploy", By: "alice", At: at}, "web-2": {State: runtime.StateMaint, At: at}},
		"be_api": {"api-1": {State: runtime.StateMaint, At: at}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for b, ov := range want {
		if !sameOverrides(got[b], ov) {
			t.Errorf("%s: got %v, want %v", b, got[b], ov)
		}
	}
	if len(errs) != 7 {
		t.Fatalf("%d errors, want 7: %v", len(errs), errs)
	}
	withInstance := 0
	for _, e := range errs {
		if !strings.Contains(e.Error(), "hapctl/drains/") {
			t.Errorf("error does not name the key: %v", e)
		}
		if e.Backend != "" {
			withInstance++
		}
	}
	// web-3..web-6 have good keys and bad values: they keep their last
	// override, or are drained.
	if withInstance != 4 {
		t.Fatalf("%d errors name an instance, want 4: %v", withInstance, errs)
	}
	last := func(backend, id string) (Override, bool) {
		if id == "web-4" {
			return Override{State: runtime.StateMaint, Reason: "before"}, true
		}
		return Override{}, false
	}
	KeepUnreadable(got, errs, last)
	if o := got["be_web"]["web-4"]; o.State != runtime.StateMaint || o.Reason != "before" {
		t.Errorf("web-4 did not keep its last override: %+v", o)
	}
	for _, id := range []string{"web-3", "web-5", "web-6"} {
		if o := got["be_web"][id]; o.State != runtime.StateDrain || !strings.Contains(o.Reason, "unreadable") {
			t.Errorf("%s: %+v, want drained", id, o)
		}
	}
	if len(got["be_web"]) != 6 || len(got) != 2 {
		t.Errorf("after KeepUnreadable: %v", got)
	}
}

func TestPublishDrainsMarksChangedBackends(t *testing.T) {
	t.Parallel()
	s := NewStore()
	if _, loaded := s.Overrides("be_web"); loaded {
		t.Fatal("drains loaded before any answer")
	}
	s.PublishDrains(map[string]Overrides{"be_web": {"a": {State: runtime.StateDrain}}})
	if ov, loaded := s.Overrides("be_web"); !loaded || ov["a"].State != runtime.StateDrain {
		t.Fatalf("overrides %v, loaded %v", ov, loaded)
	}
	s.TakeDirty()
	s.PublishDrains(map[string]Overrides{"be_web": {"a": {State: runtime.StateDrain}}, "be_api": {"x": {State: runtime.StateMaint}}})
	if d := s.TakeDirty(); len(d) != 1 || d[0] != "be_api" {
		t.Fatalf("dirty %v, want [be_api]", d)
	}
	s.PublishDrains(nil)
	if d := s.TakeDirty(); len(d) != 2 {
		t.Fatalf("dirty %v, want both", d)
	}
}

// TestDrainWatchFollowsKV writes, changes and deletes drains in a real Consul
// and waits for the watch to publish each.
func TestDrainWatchFollowsKV(t *testing.T) {
	t.Parallel()
	c := testbed.StartConsul(t)
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	kv := DrainKV{KV: client.KV(), Prefix: "hapctl"}
	w := &DrainWatch{DrainKV: kv, Store: store, Log: zerolog.Nop()}
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	testbed.Eventually(t, 10*time.Second, "drains read", func() error {
		if _, loaded := store.Overrides("be_web"); !loaded {
			return errNotYet
		}
		return nil
	})
	o := Override{State: runtime.StateDrain, Reason: "deploy 42", By: "127.0.0.1:5555", At: time.Now().UTC().Round(time.Millisecond)}
	if err := kv.Put(ctx, "be_web", "web-1", o); err != nil {
		t.Fatal(err)
	}
	waitOverride := func(want *Override) {
		t.Helper()
		testbed.Eventually(t, 10*time.Second, "the watch publishes the change", func() error {
			ov, _ := store.Overrides("be_web")
			got, ok := ov["web-1"]
			if (want == nil) != !ok || want != nil && !got.Same(*want) {
				return errNotYet
			}
			return nil
		})
	}
	waitOverride(&o)
	o.State, o.Reason = runtime.StateMaint, "disk"
	if err := kv.Put(ctx, "be_web", "web-1", o); err != nil {
		t.Fatal(err)
	}
	waitOverride(&o)
	if err := kv.Delete(ctx, "be_web", "web-1"); err != nil {
		t.Fatal(err)
	}
	waitOverride(nil)
	for _, id := range []string{"web-1", "web-2"} {
		if has, err := kv.Has(ctx, "be_web", id); err != nil || has {
			t.Fatalf("Has(%s) = %v, %v after the delete", id, has, err)
		}
	}
	// A value that goes bad keeps the last override in force.
	if err := kv.Put(ctx, "be_web", "web-2", o); err != nil {
		t.Fatal(err)
	}
	if has, err := kv.Has(ctx, "be_web", "web-2"); err != nil || !has {
		t.Fatalf("Has(web-2) = %v, %v", has, err)
	}
	testbed.Eventually(t, 10*time.Second, "web-2 drained", func() error {
		if ov, _ := store.Overrides("be_web"); !ov["web-2"].Same(o) {
			return errNotYet
		}
		return nil
	})
	if _, err := client.KV().Put(&api.KVPair{Key: "hapctl/drains/be_web/web-2", Value: []byte("{garbage")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "hapctl/drains/be_web/web-3", Value: []byte(`{"state":"ready"}`)}, nil); err != nil {
		t.Fatal(err)
	}
	testbed.Eventually(t, 10*time.Second, "web-3 read", func() error {
		if ov, _ := store.Overrides("be_web"); ov["web-3"].State != runtime.StateDrain {
			return errNotYet
		}
		return nil
	})
	if ov, _ := store.Overrides("be_web"); !ov["web-2"].Same(o) || !strings.Contains(ov["web-3"].Reason, "unreadable value") {
		t.Fatalf("after bad values: %+v", ov)
	}
	// A one-shot read (hapctl plan) knows no last override: both count as drained.
	if ov, err := kv.Read(ctx, false); err != nil || ov["be_web"]["web-2"].State != runtime.StateDrain || ov["be_web"]["web-3"].State != runtime.StateDrain {
		t.Fatalf("Read: %+v, %v", ov, err)
	}
	// A write that fails reports it; nothing is half-written.
	if err := kv.Put(ctx, "be_web", "web-1", Override{State: runtime.StateReady}); err == nil {
		t.Fatal("Put accepted state ready")
	}
	c.Stop()
	if err := kv.Put(ctx, "be_web", "web-1", o); err == nil || !strings.Contains(err.Error(), "hapctl/drains/be_web/web-1") {
		t.Fatalf("Put with Consul stopped: %v", err)
	}
	testbed.Eventually(t, 20*time.Second, "the watch reports the failure", func() error {
		if _, err := store.DrainsStatus(); err == nil {
			return errNotYet
		}
		return nil
	})
	// The last known drains stay in force while Consul cannot be read.
	if ov, loaded := store.Overrides("be_web"); !loaded || len(ov) != 2 || !ov["web-2"].Same(o) {
		t.Fatalf("drains after a failed read: %v (loaded %v)", ov, loaded)
	}
}

var errNotYet = errors.New("not yet")
