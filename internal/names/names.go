// Package names builds names for the objects ferry creates. Kubernetes caps most names and all
// label values at 63 characters (DNS-1123 labels); a long PVC or namespace name must still give a
// valid, stable and unique name, so long names keep a readable prefix and end in a hash.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxLabel is the limit for DNS-1123 labels and label values.
const MaxLabel = 63

// hashLen is the number of hex digits of the sha256 kept in shortened names: 10 hex digits give
// 40 bits, so two names collide only among about a million names sharing the same prefix.
const hashLen = 10

// Hash returns a short, stable hex digest of parts, joined by "/".
func Hash(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// Join joins parts with "-" into a DNS-1123 label of at most max characters. Characters a label
// cannot hold become "-"; when the result is too long it is cut and ends in "-" plus a hash of
// the whole input, so distinct inputs keep distinct names.
func Join(max int, parts ...string) string {
	full := sanitize(strings.Join(parts, "-"))
	if len(full) <= max && full == strings.Join(parts, "-") {
		return full
	}
	h := Hash(parts...)
	keep := max - len(h) - 1
	if keep < 0 {
		return h[:max]
	}
	if len(full) < keep {
		keep = len(full)
	}
	head := strings.Trim(full[:keep], "-.")
	if head == "" {
		return h
	}
	return head + "-" + h
}

// Label returns a valid label value (≤ 63 characters) for s: s itself when it already is one,
// otherwise a shortened, hashed form.
func Label(s string) string {
	return Join(MaxLabel, s)
}

// sanitize lower-cases s and replaces characters not allowed in a DNS-1123 label with "-".
func sanitize(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}
