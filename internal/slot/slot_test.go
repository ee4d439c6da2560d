package slot

import (
	"fmt"
	"testing"
)

func TestIndex(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]int{
		"srv1": 1, "srv42": 42, "srv999999": 999999,
		"srv0": 0, "srv01": 0, "srv": 0, "srvx": 0, "backup": 0, "srv-1": 0, "srv+1": 0, "srv1234567": 0, "SRV1": 0, "srv1 ": 0,
	} {
		got, ok := Index(name)
		if got != want || ok != (want > 0) {
			t.Errorf("Index(%q) = %d %v, want %d", name, got, ok, want)
		}
	}
	for _, i := range []int{1, 9, 10, 12345} {
		if n, ok := Index(Name(i)); !ok || n != i {
			t.Errorf("round trip of %d: %d %v", i, n, ok)
		}
	}
}

func TestGrowShrink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		s            Sizing
		grow, shrink int
		low          bool
	}{
		{"fits", Sizing{Slots: 8, Need: 8, Used: 8, Highest: 8, Min: 8, Max: 1024}, 8, 8, false},
		{"one more doubles", Sizing{Slots: 8, Need: 9, Used: 8, Highest: 8, Min: 8, Max: 1024}, 16, 8, false},
		{"burst skips steps", Sizing{Slots: 8, Need: 40, Used: 8, Highest: 8, Min: 8, Max: 1024}, 64, 8, false},
		{"power of two from odd min", Sizing{Slots: 10, Need: 11, Used: 10, Highest: 10, Min: 10, Max: 1024}, 16, 10, false},
		{"capped at max", Sizing{Slots: 512, Need: 2000, Used: 512, Highest: 512, Min: 8, Max: 1000}, 1000, 512, false},
		{"at max stays", Sizing{Slots: 1000, Need: 2000, Used: 1000, Highest: 1000, Min: 8, Max: 1000}, 1000, 1000, false},
		{"below min grows to min", Sizing{Slots: 0, Need: 0, Min: 8, Max: 1024}, 8, 0, false},
		{"below min with many", Sizing{Slots: 3, Need: 20, Used: 3, Highest: 3, Min: 8, Max: 1024}, 32, 3, false},
		{"odd slot count grows to power of two", Sizing{Slots: 40, Need: 41, Used: 40, Highest: 40, Min: 8, Max: 1024}, 64, 40, false},
		{"low shrinks to min", Sizing{Slots: 64, Need: 3, Used: 3, Highest: 3, Min: 8, Max: 1024}, 64, 8, true},
		{"low keeps headroom", Sizing{Slots: 64, Need: 16, Used: 16, Highest: 16, Min: 8, Max: 1024}, 64, 32, true},
		{"quarter is low", Sizing{Slots: 32, Need: 8, Used: 8, Highest: 20, Min: 8, Max: 1024}, 32, 20, true},
		{"above quarter is not low", Sizing{Slots: 32, Need: 9, Used: 9, Highest: 9, Min: 8, Max: 1024}, 32, 32, false},
		{"bound trailing slot stays", Sizing{Slots: 64, Need: 3, Used: 3, Highest: 60, Min: 8, Max: 1024}, 64, 60, true},
		{"at min never low", Sizing{Slots: 8, Need: 0, Used: 0, Highest: 0, Min: 8, Max: 1024}, 8, 8, false},
		{"empty shrinks to min", Sizing{Slots: 16, Need: 0, Used: 0, Highest: 0, Min: 8, Max: 1024}, 16, 8, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Grow(tt.s); got != tt.grow {
				t.Errorf("Grow = %d, want %d", got, tt.grow)
			}
			if got := Shrink(tt.s); got != tt.shrink {
				t.Errorf("Shrink = %d, want %d", got, tt.shrink)
			}
			if got := Low(tt.s); got != tt.low {
				t.Errorf("Low = %v, want %v", got, tt.low)
			}
		})
	}
}

// TestGrowthSteps: going from 0 to N instances one at a time costs
// O(log N) growths, each to a power of two.
func TestGrowthSteps(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ n, steps int }{{8, 0}, {64, 3}, {1000, 7}, {1024, 7}, {1025, 8}} {
		s := Sizing{Slots: 8, Min: 8, Max: 4096}
		steps := 0
		var seen []int
		for need := 1; need <= c.n; need++ {
			s.Need = need
			if g := Grow(s); g != s.Slots {
				steps++
				s.Slots = g
				seen = append(seen, g)
			}
		}
		if steps != c.steps {
			t.Errorf("0 → %d: %d growths %v, want %d", c.n, steps, seen, c.steps)
		}
		if fmt.Sprint(seen) != fmt.Sprint(pow2s(16, s.Slots)) {
			t.Errorf("0 → %d: growths %v are not the powers of two", c.n, seen)
		}
	}
}

func pow2s(from, to int) []int {
	var out []int
	for p := from; p <= to; p *= 2 {
		out = append(out, p)
	}
	return out
}

func TestMissing(t *testing.T) {
	t.Parallel()
	got := Missing(map[int]bool{1: true, 2: true, 4: true, 7: true}, 4)
	if fmt.Sprint(got) != "[3 5 6 8]" {
		t.Fatalf("Missing = %v, want [3 5 6 8]", got)
	}
	if got := Missing(nil, 0); len(got) != 0 {
		t.Fatalf("Missing(nil, 0) = %v", got)
	}
}
