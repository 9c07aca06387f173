package datamover

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferry-dev/ferry/internal/transfer"
)

func TestNamesFor(t *testing.T) {
	long := strings.Repeat("p", 250)
	for _, tc := range []struct{ ns, pvc string }{{"app", "data"}, {strings.Repeat("n", 63), long}} {
		n := namesFor(tc.ns, tc.pvc)
		for _, name := range []string{n.server, n.client, n.hash} {
			assert.Empty(t, validation.IsDNS1123Label(name), "%q", name)
		}
		// generated pod names add "-<attempt>-" and five random characters
		assert.LessOrEqual(t, len(n.client)+len("-3-")+5, 253)
		for k, v := range n.labels("2f1c2a9e-0000-4000-8000-000000000001", RoleServer) {
			assert.Empty(t, validation.IsValidLabelValue(v), "%s=%q", k, v)
		}
		assert.Equal(t, n, namesFor(tc.ns, tc.pvc), "stable, so a restarted sidecar finds its objects")
	}
	assert.NotEqual(t, namesFor("a", "b-c").hash, namesFor("a-b", "c").hash)
}

func TestTransferPods(t *testing.T) {
	cfg := cfgWith(t, map[string]string{"verify": "true", "bwlimitKBps": "2048", "streams": "2"})
	n := namesFor("app", "data")
	pvc := sourcePVC()
	req := &transfer.Request{ID: "t1", Type: transfer.Stage, TargetNamespace: "app2", TargetName: "data"}

	srv := serverPod(n, "app2", "data", "t1", cfg)
	c := srv.Spec.Containers[0]
	assert.Equal(t, []string{"ferry-datamover", "serve", "--dir", "/mnt/data", "--listen", "$(POD_IP):8443", "--certs", "/mnt/certs",
		"--ready-file", "/mnt/tmp/ready"}, c.Command)
	assert.Equal(t, []string{"test", "-e", "/mnt/tmp/ready"}, c.ReadinessProbe.Exec.Command, "no TCP probe: stunnel would log each as a failed handshake")
	assert.ElementsMatch(t, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETGID", "SYS_CHROOT"}, c.SecurityContext.Capabilities.Add)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.False(t, *srv.Spec.AutomountServiceAccountToken, "transfer pods need no API access")

	cli := clientPod(n, pvc, req, cfg, endpoint{address: "10.0.0.7:8443"}, 2, "node-a")
	cc := cli.Spec.Containers[0]
	assert.Equal(t, []string{"ferry-datamover", "send", "--dir", "/mnt/data", "--to", "10.0.0.7:8443", "--certs", "/mnt/certs",
		"--progress=json", "--streams", "2", "--checksum", "--bwlimit", "2048"}, cc.Command)
	assert.True(t, cli.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly, "the source volume is mounted read-only")
	assert.True(t, cc.VolumeMounts[0].ReadOnly)
	assert.Equal(t, []corev1.Capability{"DAC_READ_SEARCH"}, cc.SecurityContext.Capabilities.Add)
	assert.Equal(t, "node-a", cli.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0])
	assert.Equal(t, "app/data", cli.Annotations[SourcePVCAnnotation])

	nonRoot := cfgWith(t, map[string]string{"transferRunAsRoot": "false", "transferRunAsUser": "1000"})
	c = serverPod(n, "app2", "data", "t1", nonRoot).Spec.Containers[0]
	assert.Equal(t, int64(1000), *c.SecurityContext.RunAsUser)
	assert.True(t, *c.SecurityContext.RunAsNonRoot)
	assert.Empty(t, c.SecurityContext.Capabilities.Add)
}
