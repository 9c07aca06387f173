package troubleshoot

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMETableIsTheTable keeps the README's Troubleshooting table and this package's Table
// one text: a fix changed in one place only fails here.
func TestREADMETableIsTheTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(readme), "## Troubleshooting\n\n")
	require.True(t, ok, "README.md has no Troubleshooting section")
	var lines []string
	for _, l := range strings.Split(after, "\n") {
		if !strings.HasPrefix(l, "|") {
			break
		}
		lines = append(lines, l)
	}
	assert.Equal(t, Markdown(), strings.Join(lines, "\n")+"\n")
}

func TestFix(t *testing.T) {
	tests := []struct {
		name, message, want string
	}{
		{"storage class", `storage class "gold" does not exist on the target cluster (it has: standard)`, Table[2].Fix},
		{"prepare timeout", "Preparing timed out after 10m0s: waiting for the server pod", Table[3].Fix},
		{"unsigned", "transfer b1 was refused: the request is not signed", Table[7].Fix},
		{"signature of another", "the signature does not match the request", Table[7].Fix},
		{"overwrite", "target PVC app/data holds data ferry did not write", Table[8].Fix},
		{"final under way", "a final transfer (x) of this PVC was under way: a stage does not replace it; …", Table[9].Fix},
		{"replaced", "transfer a was replaced by b before it finished", Table[10].Fix},
		{"unknown", "disk on fire", ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Fix(tc.message))
		})
	}
}

// TestEveryMatchFindsItsOwnRow guards the order of Table: an earlier row whose match is a
// substring of a later row's would steal its messages.
func TestEveryMatchFindsItsOwnRow(t *testing.T) {
	for i, e := range Table {
		for _, m := range e.Match {
			assert.Equal(t, Table[i].Fix, Fix(m), "match %q of row %d", m, i)
		}
	}
}
