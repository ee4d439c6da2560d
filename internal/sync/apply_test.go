package sync

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hapctl/hapctl/internal/runtime"
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
	if res != (Applied{OK: 3, Failed: 1, Skipped: 1}) {
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
	if res != (Applied{OK: 1, Failed: 1, Skipped: 2}) {
		t.Fatalf("applied = %+v", res)
	}
	if n := len(f.commands()); n != 1 {
		t.Fatalf("%d commands reached the socket, want 1", n)
	}
}

func TestApplyNothing(t *testing.T) {
	t.Parallel()
	f := newFake("be_web", 1)
	if res, err := Apply(context.Background(), f, nil); err != nil || res != (Applied{}) || len(f.commands()) != 0 {
		t.Fatalf("%+v %v %v", res, err, f.commands())
	}
}
