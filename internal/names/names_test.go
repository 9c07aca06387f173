package names

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestJoin(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct {
		name  string
		max   int
		parts []string
		want  string // "" means: only check validity and length
	}{
		{name: "short names are kept", max: 63, parts: []string{"ferry", "server", "data"}, want: "ferry-server-data"},
		{name: "exactly 63 is kept", max: 63, parts: []string{strings.Repeat("b", 63)}, want: strings.Repeat("b", 63)},
		{name: "64 is hashed", max: 63, parts: []string{strings.Repeat("b", 64)}},
		{name: "long pvc name", max: 63, parts: []string{"ferry", long}},
		{name: "upper case and dots are sanitized", max: 63, parts: []string{"Ferry", "my.pvc_1"}},
		{name: "tiny max still valid", max: 12, parts: []string{"ferry", long}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Join(tc.max, tc.parts...)
			if tc.want != "" {
				assert.Equal(t, tc.want, got)
			}
			assert.LessOrEqual(t, len(got), tc.max)
			assert.Empty(t, validation.IsDNS1123Label(got), "%q is not a DNS-1123 label", got)
		})
	}
}

func TestJoinKeepsDistinctInputsDistinct(t *testing.T) {
	prefix := strings.Repeat("x", 80)
	a := Join(63, "ferry", prefix+"-one")
	b := Join(63, "ferry", prefix+"-two")
	assert.NotEqual(t, a, b)
	// and is stable
	assert.Equal(t, a, Join(63, "ferry", prefix+"-one"))
	// sanitizing must not make two different names equal
	assert.NotEqual(t, Join(63, "my.pvc"), Join(63, "my-pvc"))
}

func TestLabel(t *testing.T) {
	assert.Equal(t, "data", Label("data"))
	l := Label(strings.Repeat("n", 200))
	assert.Len(t, l, 63)
	assert.Empty(t, validation.IsValidLabelValue(l))
}
