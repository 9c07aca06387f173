package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// TestAlertRules runs the PrometheusRule's alerts through promtool's unit tests
// (monitoring/rules-test.yaml) with the real promtool (Debian's prometheus package).
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool runs these tests: run `make deps`")
	raw, err := os.ReadFile("monitoring/prometheusrule.yaml")
	require.NoError(t, err)
	var rule struct {
		Spec map[string]any `json:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &rule))
	require.NotEmpty(t, rule.Spec["groups"])
	dir := t.TempDir()
	rules, err := yaml.Marshal(rule.Spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644))
	tests, err := os.ReadFile("monitoring/rules-test.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules-test.yaml"), tests, 0o644))
	out, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yaml")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(promtool, "test", "rules", filepath.Join(dir, "rules-test.yaml")).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// TestMonitoringNamesRealMetrics: every ferry metric the alerts and the Grafana dashboard query
// is one the data mover defines (a renamed metric would silently empty a panel).
func TestMonitoringNamesRealMetrics(t *testing.T) {
	defined := map[string]bool{}
	files, err := filepath.Glob("../sidecar/*/metrics.go")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	name := regexp.MustCompile(`Name:\s+"(ferry_[a-z_]+)"`)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range name.FindAllStringSubmatch(string(raw), -1) {
			defined[m[1]] = true
		}
	}
	ferryMetric := regexp.MustCompile(`ferry_[a-z_]+`)
	histogramPart := regexp.MustCompile(`_(bucket|sum|count)$`)
	for _, file := range []string{"monitoring/prometheusrule.yaml", "monitoring/grafana-dashboard.json"} {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		used := ferryMetric.FindAllString(string(raw), -1)
		require.NotEmpty(t, used, file)
		for _, m := range used {
			assert.True(t, defined[m] || defined[histogramPart.ReplaceAllString(m, "")], "%s queries %s, which the data mover does not define", file, m)
		}
	}
	var dashboard struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err := os.ReadFile("monitoring/grafana-dashboard.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &dashboard), "the dashboard is JSON Grafana can import")
	require.NotEmpty(t, dashboard.Panels)
	for _, p := range dashboard.Panels {
		assert.NotEmpty(t, p.Title)
		assert.NotEmpty(t, p.Targets, "panel %q queries something", p.Title)
	}
}
