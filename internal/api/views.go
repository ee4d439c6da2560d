package api

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Service is what the API serves: the daemon implements it. Errors that are
// the caller's (unknown backend, free slot) are *Error with a 4xx status;
// any other error is a 500.
type Service interface {
	Backends(ctx context.Context) ([]Backend, error)
	Backend(ctx context.Context, name string) (Backend, error)
	// Override sets (drain, maint) or lifts (undrain) an operator override.
	Override(ctx context.Context, req OverrideRequest) (OverrideResult, error)
	Plan(ctx context.Context) (Plan, error)
}

// BackendList is the answer to GET /v1/backends.
type BackendList struct {
	Backends []Backend `json:"backends"`
}

// Backend is one managed backend: GET /v1/backends/{backend}.
type Backend struct {
	Name    string   `json:"name"`
	Service string   `json:"service"`
	Tags    []string `json:"tags"`
	// Growth is how the backend gets more slots: dynamic or reload;
	// GrowthNote says why a dynamic backend grows by reload.
	Growth     string `json:"growth"`
	GrowthNote string `json:"growth_note,omitempty"`
	Slots      []Slot `json:"slots"`
	// Unplaced are the service IDs of passing instances without a slot.
	Unplaced []string `json:"unplaced"`
	// Invalid are the instances skipped because a value failed validation.
	Invalid []Invalid `json:"invalid"`
	// Drains are every operator override of the backend, including those of
	// instances that have no slot or are not passing.
	Drains      []Drain    `json:"drains"`
	ConsulIndex uint64     `json:"consul_index"`
	LastSync    *time.Time `json:"last_sync"`
	// Guarded is set while the empty guard keeps the last set of servers.
	Guarded bool   `json:"guarded"`
	Error   string `json:"error,omitempty"`
}

// Slot is one slot server as HAProxy runs it, with the instance bound to it.
type Slot struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	Port       int    `json:"port"`
	Weight     int    `json:"weight"`
	AdminState string `json:"admin_state"` // ready, drain or maint
	OperState  string `json:"oper_state"`  // up, down, starting or stopping
	// Free is set when no instance is bound to the slot.
	Free      bool      `json:"free"`
	ServiceID string    `json:"service_id,omitempty"`
	Node      string    `json:"node,omitempty"`
	Override  *Override `json:"override,omitempty"`
	// Leaving is set while the slot drains during removal_grace because its
	// instance left Consul's passing set.
	Leaving bool `json:"leaving,omitempty"`
}

// Override is an operator's drain or maint.
type Override struct {
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// Drain is an override with the instance it is for.
type Drain struct {
	ServiceID string `json:"service_id"`
	// Server is the slot of the instance, "" when it has none.
	Server string `json:"server,omitempty"`
	Override
}

// Invalid is a skipped Consul instance.
type Invalid struct {
	ServiceID string `json:"service_id"`
	Node      string `json:"node"`
	Reason    string `json:"reason"`
}

// Actions on a server.
const (
	ActionDrain   = "drain"
	ActionMaint   = "maint"
	ActionUndrain = "undrain"
)

// OverrideRequest is a drain, maint or undrain call.
type OverrideRequest struct {
	Backend string
	Server  string // slot name, address:port or Consul service ID
	Action  string
	Reason  string
	By      string
}

// OverrideResult is the answer to a drain, maint or undrain call.
type OverrideResult struct {
	Backend   string `json:"backend"`
	Server    string `json:"server,omitempty"`
	ServiceID string `json:"service_id"`
	Address   string `json:"address,omitempty"`
	Action    string `json:"action"`
	// State is the admin state the instance has now: drain, maint or ready.
	State  string     `json:"state"`
	Reason string     `json:"reason,omitempty"`
	By     string     `json:"by,omitempty"`
	At     *time.Time `json:"at,omitempty"`
	// Applied is set once this node's HAProxy has the change; the other
	// nodes follow through Consul KV. Note says why it is not.
	Applied bool   `json:"applied"`
	Note    string `json:"note,omitempty"`
}

// Plan is what the next sync would do: GET /v1/plan.
type Plan struct {
	// Reload is set when the next sync would reload HAProxy.
	Reload   bool          `json:"reload"`
	Backends []BackendPlan `json:"backends"`
}

// BackendPlan is one backend's part of a Plan.
type BackendPlan struct {
	Name     string   `json:"name"`
	Commands []string `json:"commands"`
	Slots    int      `json:"slots"`
	Bound    int      `json:"bound"`
	Unplaced int      `json:"unplaced"`
	// GrowTo is the slot count the backend would grow to (0: none); GrowBy
	// is "add server" or "reload".
	GrowTo int    `json:"grow_to,omitempty"`
	GrowBy string `json:"grow_by,omitempty"`
	Error  string `json:"error,omitempty"`
}

// NotFound, Conflict and Unavailable build the errors a Service returns.
func NotFound(format string, args ...any) error {
	return &Error{Status: http.StatusNotFound, Err: fmt.Errorf(format, args...)}
}

// Conflict is an action that does not fit the server's state.
func Conflict(format string, args ...any) error {
	return &Error{Status: http.StatusConflict, Err: fmt.Errorf(format, args...)}
}

// Unavailable is a dependency (Consul, HAProxy) that did not answer.
func Unavailable(format string, args ...any) error {
	return &Error{Status: http.StatusServiceUnavailable, Err: fmt.Errorf(format, args...)}
}
