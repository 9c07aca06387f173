package podrunner

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

func TestSetupScript(t *testing.T) {
	script := setupScript([]mount{
		{source: "/tmp/hostpath_pv/x", target: "/mnt/data/sub"},
		{source: "/tmp/hostpath_pv/x", target: "/mnt/data"},
		{source: "/work/it's", target: "/mnt/certs", readOnly: true},
		{source: "/work/f", target: "/mnt/f", file: true},
	}, "/mnt/data", nil, nil)
	lines := strings.Split(strings.TrimSpace(script), "\n")
	assert.Equal(t, "set -e", lines[0])
	assert.Contains(t, lines[1], "-t tmpfs -o mode=0755 ferry-pod-mnt /mnt", "a private /mnt first")
	// Parents before children, /tmp after every bind (sources may live under the host's /tmp),
	// the command last.
	idx := func(s string) int {
		for i, l := range lines {
			if strings.Contains(l, s) {
				return i
			}
		}
		t.Fatalf("script lacks %q:\n%s", s, script)
		return -1
	}
	assert.Less(t, idx("--bind '/tmp/hostpath_pv/x' '/mnt/data'"), idx("--bind '/tmp/hostpath_pv/x' '/mnt/data/sub'"))
	assert.Contains(t, script, `--bind '/work/it'\''s' '/mnt/certs'`, "quotes survive")
	assert.Contains(t, script, "-o remount,bind,ro '/mnt/certs'")
	assert.Contains(t, script, ": > '/mnt/f'", "a file mount gets a file to mount on")
	assert.Less(t, idx("/mnt/f'"), idx("ferry-pod-tmp /tmp"))
	assert.Equal(t, "cd '/mnt/data'", lines[len(lines)-2])
	assert.Equal(t, `exec "$@"`, lines[len(lines)-1])
}

func TestShellQuote(t *testing.T) {
	assert.Equal(t, `'plain'`, shellQuote("plain"))
	assert.Equal(t, `'a b'`, shellQuote("a b"))
	assert.Equal(t, `'it'\''s'`, shellQuote("it's"))
	assert.Equal(t, `'$(x)'`, shellQuote("$(x)"))
}

func TestSetupScriptDropsPrivileges(t *testing.T) {
	script := setupScript(nil, "", []string{"--bounding-set=-all,+chown", "--no-new-privs"}, nil)
	assert.Contains(t, script, `setpriv '--bounding-set=-all,+chown' '--no-new-privs' -- "$@"`)
}

func TestPrivilegeArgs(t *testing.T) {
	no, yes := false, true
	defaults := "--bounding-set=-all,+audit_write,+chown,+dac_override,+fowner,+fsetid,+kill,+mknod,+net_bind_service,+net_raw,+setfcap,+setgid,+setpcap,+setuid,+sys_chroot"
	tests := []struct {
		name string
		sc   *corev1.SecurityContext
		want []string
	}{
		{"no security context: the runtime's defaults", nil, []string{defaults, "--inh-caps=-all"}},
		{"privileged keeps everything", &corev1.SecurityContext{Privileged: &yes}, nil},
		{"drop all, add some", &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN", "CAP_FOWNER"},
		}}, []string{"--bounding-set=-all,+chown,+fowner", "--inh-caps=-all", "--no-new-privs"}},
		{"drop all", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"all"}}},
			[]string{"--bounding-set=-all", "--inh-caps=-all"}},
		{"drop one", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"NET_RAW"}}},
			[]string{strings.Replace(defaults, ",+net_raw", "", 1), "--inh-caps=-all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, privilegeArgs(tt.sc))
		})
	}
}
