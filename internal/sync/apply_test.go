package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hapctl/hapctl/internal/runtime"
	"github.com/hapctl/hapctl/internal/slot"
)

func TestApplyTwoPhases(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 3)
	// HAProxy refuses srv2's new address: srv2 must not be put in service.
	f.refuse = func(cmd string) string {
		if strings.HasPrefix(cmd, "set server be_web/srv2 addr") {
			return "Invalid addr"
		}
		return ""
	}
	ops := []Op{
		addrOp("srv1", "10.0.0.1:80"), commit("srv1", ready),
		addrOp("srv2", "10.0.0.2:80"), commit("srv2", ready),
		weightOp("srv3", 5),
	}
	res, err := Apply(context.Background(), f, ops)
	if err == nil || !strings.Contains(err.Error(), "Invalid addr") {
		t.Fatalf("err = %v, want the refusal", err)
	}
	if res.OK != 3 || res.Failed != 1 || res.Skipped != 1 || len(res.FailedBackends) != 1 || !res.FailedBackends["be_web"] {
		t.Fatalf("applied = %+v", res)
	}
	want := []string{
		"set server be_web/srv1 addr 10.0.0.1 port 80",
		"set server be_web/srv2 addr 10.0.0.2 port 80",
		"set server be_web/srv3 weight 5",
		"set server be_web/srv1 state ready",
	}
	if got := f.commands(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("sent:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := f.table("be_web"); got != "srv1=10.0.0.1:80/ready/1 srv2=127.0.0.1:1/maint/1 srv3=127.0.0.1:1/maint/5" {
		t.Fatalf("state = %s", got)
	}
}

func TestApplySocketFailureSkipsSecondPhase(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 2)
	f.cutAfter = 1
	ops := []Op{addrOp("srv1", "10.0.0.1:80"), addrOp("srv2", "10.0.0.2:80"), commit("srv1", ready), commit("srv2", ready)}
	res, err := Apply(context.Background(), f, ops)
	var ce *runtime.ConnError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want the connection error", err)
	}
	if res.OK != 1 || res.Failed != 1 || res.Skipped != 2 || !res.FailedBackends["be_web"] {
		t.Fatalf("applied = %+v", res)
	}
	if n := len(f.commands()); n != 1 {
		t.Fatalf("%d commands reached the socket, want 1", n)
	}
}

func TestApplyNothing(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 1)
	if res, err := Apply(context.Background(), f, nil); err != nil || res.OK+res.Failed+res.Skipped != 0 || len(res.FailedBackends) != 0 || len(f.commands()) != 0 {
		t.Fatalf("%+v %v %v", res, err, f.commands())
	}
}

func TestApplyLargeBatchKeepsSlotOrder(t *testing.T) {
	t.Parallel()
	const n = 400 // 800 first-phase ops: over parallelMin, split over connections
	f := newFake("be_web", n)
	f.refuse = func(cmd string) string {
		if cmd == "set server be_web/srv77 addr 10.0.0.77 port 80" {
			return "Invalid addr"
		}
		return ""
	}
	var ops []Op
	for i := 1; i <= n; i++ {
		name := slot.Name(i)
		ops = append(ops, addrOp(name, fmt.Sprintf("10.0.%d.%d:80", i/256, i%256)), weightOp(name, 3), commit(name, ready))
	}
	ops[76*3] = addrOp("srv77", "10.0.0.77:80")
	res, err := Apply(context.Background(), f, ops)
	if err == nil || res.OK != 3*n-2 || res.Failed != 1 || res.Skipped != 1 {
		t.Fatalf("applied %+v, err %v", res, err)
	}
	// Per slot: addr, then weight, then (second phase) ready.
	pos := map[string][]string{}
	for _, c := range f.commands() {
		f := strings.Fields(c)
		pos[f[2]] = append(pos[f[2]], f[3])
	}
	for i := 1; i <= n; i++ {
		key := "be_web/" + slot.Name(i)
		want := "addr weight state"
		if i == 77 {
			want = "addr weight"
		}
		if got := strings.Join(pos[key], " "); got != want {
			t.Fatalf("%s got commands %q, want %q", key, got, want)
		}
	}
	if s := f.server("be_web", "srv77"); s.State() != maint {
		t.Fatalf("srv77 is %s after its address was refused", s.State())
	}
}
