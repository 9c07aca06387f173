package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEveryKey keeps the README's configuration table true.
func TestREADMEListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		if !strings.Contains(string(readme), "`"+k+"`") {
			t.Errorf("README.md does not document the ferry-config key %q", k)
		}
	}
}
