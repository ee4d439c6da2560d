// Package slot names the server slots hapctl owns: srv1, srv2, … srvN.
package slot

import "strconv"

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
