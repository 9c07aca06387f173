package stack

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRandomToken(t *testing.T) {
	a, b := randomToken(16), randomToken(16)
	assert.Len(t, a, 32)
	assert.NotEqual(t, a, b)
}
