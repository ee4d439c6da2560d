// Package slot names the server slots hapctl owns: srv1, srv2, … srvN.
package slot

import (
	"math/bits"
	"net/netip"
	"strconv"
)

// Placeholder is where a free slot points: nothing listens on port 1, and
// the slot is in maint anyway.
const Placeholder = "127.0.0.1:1"

// PlaceholderEndpoint is Placeholder parsed.
var PlaceholderEndpoint = netip.MustParseAddrPort(Placeholder)

// MaxIndex bounds slot numbers (config.MaxSlotsLimit is lower).
const MaxIndex = 999999

// Name is the server name of slot i (1-based).
func Name(i int) string { return "srv" + strconv.Itoa(i) }

// Index parses a slot server name; ok is false for any other server name,
// including srv0, srv01, srv+1 and srv-1.
func Index(name string) (int, bool) {
	if len(name) < 4 || len(name) > 9 || name[:3] != "srv" || name[3] == '0' {
		return 0, false
	}
	n := 0
	for i := 3; i < len(name); i++ {
		c := name[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// Sizing is what the slot count of one backend depends on.
type Sizing struct {
	Slots   int // slots the backend has
	Need    int // passing instances to place: the bound ones and the unplaced
	Used    int // slots bound to an instance
	Highest int // highest slot number that must stay: bound, or still in service
	Min     int // min_slots
	Max     int // max_slots
}

// Grow returns the slot count a backend must grow to, or s.Slots when it
// need not grow: the next power of two that fits every instance, at least
// Min and at most Max. A backend below Min grows to Min even without
// instances.
func Grow(s Sizing) int {
	if s.Need <= s.Slots && s.Slots >= s.Min {
		return s.Slots
	}
	t := min(max(s.Min, pow2(s.Need)), max(s.Max, s.Min))
	return max(t, s.Slots)
}

// Low reports whether a backend uses at most a quarter of its slots and has
// more than Min: the condition that must hold for shrink_after before it
// shrinks.
func Low(s Sizing) bool { return s.Slots > s.Min && s.Used*4 <= s.Slots }

// Shrink returns the slot count a low backend shrinks to, or s.Slots: room
// for twice the instances it has (rounded up to a power of two), never
// below Min, and never below its highest slot that must stay, since only
// trailing free slots are dropped: a bound slot never moves.
func Shrink(s Sizing) int {
	if !Low(s) {
		return s.Slots
	}
	return min(max(s.Min, pow2(2*s.Used), s.Highest), s.Slots)
}

// pow2 returns the smallest power of two >= n (1 for n <= 1).
func pow2(n int) int {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len(uint(n-1))
}

// Missing returns the k lowest slot numbers not in have: the numbers new
// slots take, so that gaps are filled first.
func Missing(have map[int]bool, k int) []int {
	out := make([]int, 0, k)
	for i := 1; len(out) < k && i <= MaxIndex; i++ {
		if !have[i] {
			out = append(out, i)
		}
	}
	return out
}
