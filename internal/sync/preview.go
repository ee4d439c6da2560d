package sync

import (
	"context"
	"errors"

	"github.com/hapctl/hapctl/internal/config"
	"github.com/hapctl/hapctl/internal/slot"
)

// Preview is what a sync of one backend would do, computed without doing it.
type Preview struct {
	Backend string
	Desired Desired
	Plan    Plan
	// GrowFrom and GrowTo are set when the backend needs more slots; GrowBy
	// says how it gets them: config.GrowthDynamic or config.GrowthReload.
	GrowFrom, GrowTo int
	GrowBy           string
	Err              error
}

// PreviewBackend computes a backend's desired state and plan, with the
// slots it would grow by. in.Grow is ignored.
func PreviewBackend(in Input, dynamic bool) Preview {
	in.Grow = 0
	p := Preview{Backend: in.Backend.Name, Desired: Desire(in)}
	if !p.Desired.Guarded {
		sz := SizingOf(in.Backend, p.Desired, Slots(in.Actual))
		if to := slot.Grow(sz); to > sz.Slots {
			p.GrowFrom, p.GrowTo, p.GrowBy = sz.Slots, to, config.GrowthReload
			if dynamic {
				p.GrowBy = config.GrowthDynamic
				in.Grow = to - sz.Slots
				p.Desired = Desire(in)
			}
		}
	}
	p.Plan = MakePlan(p.Desired, in.Actual)
	return p
}

// Preview computes what a sync of every backend would do now, from the
// loop's view of Consul and HAProxy's state read now. It changes nothing.
func (l *Loop) Preview(ctx context.Context) ([]Preview, error) {
	names := l.names()
	actual, err := ReadActual(ctx, l.Runtime, names)
	if err != nil {
		return nil, err
	}
	status := l.Status()
	out := make([]Preview, 0, len(names))
	for _, name := range names {
		be := l.backend(name)
		snap, ok := l.Source.Snapshot(name)
		overrides, drainsRead := l.Source.Overrides(name)
		switch {
		case actual.Errs[name] != nil:
			out = append(out, Preview{Backend: name, Err: actual.Errs[name]})
			continue
		case !ok:
			out = append(out, Preview{Backend: name, Err: errors.New("no answer from consul yet")})
			continue
		case !drainsRead:
			out = append(out, Preview{Backend: name, Err: errors.New("the drains were not read from consul kv yet")})
			continue
		}
		dynamic := be.Growth == config.GrowthDynamic && l.NoDynamic[name] == ""
		if st, ok := status.Backends[name]; ok {
			dynamic = st.Growth == config.GrowthDynamic
		}
		in := Input{Backend: be, Snapshot: snap, Actual: actual.Servers[name], Overrides: overrides}
		out = append(out, PreviewBackend(in, dynamic))
	}
	return out, nil
}
