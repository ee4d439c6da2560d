package slot

import "testing"

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
