package podrunner

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"POD_IP": "127.1.2.3", "PORT": "2222", "EMPTY": ""}
	tests := []struct {
		name, in, want string
	}{
		{"no reference", "serve --dir /mnt/data", "serve --dir /mnt/data"},
		{"one reference", "--listen=$(POD_IP):2222", "--listen=127.1.2.3:2222"},
		{"two references", "$(POD_IP):$(PORT)", "127.1.2.3:2222"},
		{"unknown stays as written", "$(NOPE)/x", "$(NOPE)/x"},
		{"empty value", "a$(EMPTY)b", "ab"},
		{"escaped reference", "$$(POD_IP)", "$(POD_IP)"},
		{"double dollar", "cost $$5", "cost $5"},
		{"shell variable untouched", "$HOME and ${PATH}", "$HOME and ${PATH}"},
		{"unterminated", "$(POD_IP", "$(POD_IP"},
		{"trailing dollar", "end$", "end$"},
		{"empty name", "$()", "$()"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, expand(tt.in, vars))
		})
	}
}

func TestEnvMap(t *testing.T) {
	assert.Equal(t, map[string]string{"A": "1", "B": "x=y", "C": ""}, envMap([]string{"A=1", "B=x=y", "C="}))
}
