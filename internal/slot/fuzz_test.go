package slot

import (
	"strings"
	"testing"
)

// FuzzIndex checks that Index and Name are inverse on 1..MaxIndex and that
// Index accepts nothing else: every slot name it reads is the one Name
// writes, so no two spellings name one slot.
func FuzzIndex(f *testing.F) {
	for _, s := range []string{"srv1", "srv42", "srv999999", "srv1000000", "srv0", "srv01", "srv", "srvx", "srv-1", "srv+1",
		"SRV1", "srv1 ", "srv1\n", "srv1;", "srv\x001", "srv٣", "srv99999999999999999999", "legacy", ""} {
		f.Add(s, len(s)*99991-500000)
	}
	f.Add("srv7", -1)
	f.Add("srv7", 1<<62)
	f.Fuzz(func(t *testing.T, name string, i int) {
		if n, ok := Index(name); ok {
			if n < 1 || n > MaxIndex || Name(n) != name {
				t.Fatalf("Index(%q) = %d, which is named %q", name, n, Name(n))
			}
			if strings.Trim(name[3:], "0123456789") != "" || !strings.HasPrefix(name, "srv") {
				t.Fatalf("Index accepted %q", name)
			}
		} else if n != 0 {
			t.Fatalf("Index(%q) = %d, false", name, n)
		}
		n, ok := Index(Name(i))
		if want := i >= 1 && i <= MaxIndex; ok != want || ok && n != i {
			t.Fatalf("Index(Name(%d)) = %d, %v", i, n, ok)
		}
	})
}
