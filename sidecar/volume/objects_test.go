package volume

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
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
	yes := true
	req := &operation.TransferRequest{Request: operation.Request{ID: "t1", TargetNamespace: "app2", TargetName: "data"}, Type: operation.Stage, Verify: &yes}

	srv := serverPod(n, "app2", "data", "t1", cfg, false, false)
	c := srv.Spec.Containers[0]
	assert.Equal(t, []string{"ferry-datamover", "serve", "--certs=/mnt/certs", "--dir=/mnt/data", "--listen=$(POD_IP):8443",
		"--ready-file=/mnt/tmp/ready"}, c.Command)
	serve := dataplane.NewServeOptions()
	parse(t, serve.BindFlags, c.Command)
	assert.Equal(t, dataplane.ServeOptions{Dir: DataPath, Listen: "$(POD_IP):8443", CertDir: CertsPath, ReadyFile: readyFile}, serve,
		"the CLI reads back what the sidecar wrote")
	assert.Equal(t, []string{"test", "-e", "/mnt/tmp/ready"}, c.ReadinessProbe.Exec.Command, "no TCP probe: stunnel would log each as a failed handshake")
	assert.ElementsMatch(t, []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETGID", "SYS_CHROOT"}, c.SecurityContext.Capabilities.Add)
	assert.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	assert.False(t, *srv.Spec.AutomountServiceAccountToken, "transfer pods need no API access")

	cli := clientPod(n, pvc, req, cfg, endpoint{address: "10.0.0.7:8443"}, 2, "node-a")
	cc := cli.Spec.Containers[0]
	assert.Equal(t, []string{"ferry-datamover", "send", "--bwlimit=2048", "--certs=/mnt/certs", "--dir=/mnt/data",
		"--progress=json", "--streams=2", "--to=10.0.0.7:8443", "--verify=true"}, cc.Command)
	send := dataplane.NewSendOptions()
	parse(t, send.BindFlags, cc.Command)
	want := dataplane.NewSendOptions()
	want.Dir, want.To, want.CertDir, want.Progress, want.Streams, want.Verify, want.BwLimitKBps = DataPath, "10.0.0.7:8443", CertsPath, dataplane.ProgressJSON, 2, true, 2048
	assert.Equal(t, want, send, "the CLI reads back what the sidecar wrote")
	assert.True(t, cli.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly, "the source volume is mounted read-only")
	assert.True(t, cc.VolumeMounts[0].ReadOnly)
	assert.Equal(t, []corev1.Capability{"DAC_OVERRIDE"}, cc.SecurityContext.Capabilities.Add)
	assert.Equal(t, "node-a", cli.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields[0].Values[0])
	assert.Equal(t, "app/data", cli.Annotations[keys.SourcePVC])

	nonRoot := cfgWith(t, map[string]string{"transferRunAsRoot": "false", "transferRunAsUser": "1000"})
	c = serverPod(n, "app2", "data", "t1", nonRoot, true, false).Spec.Containers[0]
	assert.Contains(t, c.Command, "--require-empty=true", "a target ferry has not filled must be empty")
	assert.Equal(t, int64(1000), *c.SecurityContext.RunAsUser)
	assert.True(t, *c.SecurityContext.RunAsNonRoot)
	assert.Empty(t, c.SecurityContext.Capabilities.Add)

	// Certificates: the pod's user reads them; kubelet gives a Secret volume's root-owned files
	// to the fsGroup, which only the server has (the client's would re-own the app's volume).
	certMode := func(p *corev1.Pod) int32 {
		for _, v := range p.Spec.Volumes {
			if v.Secret != nil {
				return *v.Secret.DefaultMode
			}
		}
		t.Fatalf("pod %s has no certificate volume", p.GenerateName)
		return 0
	}
	nonRootClient := clientPod(n, pvc, req, nonRoot, endpoint{address: "10.0.0.7:8443"}, 1, "")
	assert.Nil(t, nonRootClient.Spec.SecurityContext.FSGroup, "the app's volume keeps its owners")
	assert.Equal(t, int32(0o444), certMode(nonRootClient))
	nonRootServer := serverPod(n, "app2", "data", "t1", nonRoot, true, false)
	assert.Equal(t, int64(1000), *nonRootServer.Spec.SecurityContext.FSGroup)
	assert.Equal(t, int32(0o400), certMode(nonRootServer))
	assert.Equal(t, int32(0o400), certMode(cli), "a root client's are root's alone")
	assert.Equal(t, int32(0o400), certMode(srv))
}

// TestBlockTransferPods: a block volume reaches both transfer pods as the device at DevicePath,
// alone in its folder (the server's rsync module), and send and serve are told to copy it.
func TestBlockTransferPods(t *testing.T) {
	cfg := cfgWith(t, nil)
	n := namesFor("app", "disk")
	pvc := sourcePVC()
	block := corev1.PersistentVolumeBlock
	pvc.Spec.VolumeMode = &block
	req := &operation.TransferRequest{Request: operation.Request{ID: "t1", TargetNamespace: "app2", TargetName: "disk"}, Type: operation.Stage}
	deviceOnly := func(t *testing.T, c corev1.Container) {
		t.Helper()
		assert.Equal(t, []corev1.VolumeDevice{{Name: "data", DevicePath: "/dev/ferry/volume"}}, c.VolumeDevices)
		for _, m := range c.VolumeMounts {
			assert.NotEqual(t, "data", m.Name, "the volume is a device, not a mount")
		}
	}

	srv := serverPod(n, "app2", "disk", "t1", cfg, true, true)
	c := srv.Spec.Containers[0]
	deviceOnly(t, c)
	serve := dataplane.NewServeOptions()
	parse(t, serve.BindFlags, c.Command)
	assert.Equal(t, dataplane.ServeOptions{Device: DevicePath, Listen: "$(POD_IP):8443", CertDir: CertsPath, ReadyFile: readyFile, RequireEmpty: true}, serve)

	cli := clientPod(n, pvc, req, cfg, endpoint{address: "10.0.0.7:8443"}, 1, "")
	cc := cli.Spec.Containers[0]
	deviceOnly(t, cc)
	assert.True(t, cli.Spec.Volumes[0].PersistentVolumeClaim.ReadOnly, "the source claim is read-only")
	send := dataplane.NewSendOptions()
	parse(t, send.BindFlags, cc.Command)
	assert.Equal(t, DevicePath, send.Device)
	assert.Empty(t, send.Dir)
}

// parse reads a pod command's flags the way cmd/ferry-datamover does.
func parse(t *testing.T, bind func(*pflag.FlagSet), command []string) {
	t.Helper()
	fs := pflag.NewFlagSet(command[1], pflag.ContinueOnError)
	bind(fs)
	require.NoError(t, fs.Parse(command[2:]))
	require.Empty(t, fs.Args())
}

// TestTransferPodsMeetPodSecurity runs the Pod Security admission checks the API server runs
// (k8s.io/pod-security-admission, the same code) over the pods ferry makes: root transfer pods
// within "baseline", non-root ones within "restricted". (End to end, TestPodSecurityNamespaces
// migrates through a namespace enforcing baseline.)
func TestTransferPodsMeetPodSecurity(t *testing.T) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks())
	require.NoError(t, err)
	n := namesFor("app", "data")
	req := &operation.TransferRequest{Request: operation.Request{ID: "t1", TargetNamespace: "app2", TargetName: "data"}, Type: operation.Final}
	root := cfgWith(t, nil)
	nonRoot := cfgWith(t, map[string]string{"transferRunAsRoot": "false"})
	tests := []struct {
		name  string
		pod   *corev1.Pod
		level psapi.Level
		want  bool
	}{
		{"root server within baseline", serverPod(n, "app2", "data", "t1", root, false, false), psapi.LevelBaseline, true},
		{"root client within baseline", clientPod(n, sourcePVC(), req, root, endpoint{address: "10.0.0.7:8443"}, 1, ""), psapi.LevelBaseline, true},
		{"root server not within restricted", serverPod(n, "app2", "data", "t1", root, false, false), psapi.LevelRestricted, false},
		{"non-root server within restricted", serverPod(n, "app2", "data", "t1", nonRoot, true, false), psapi.LevelRestricted, true},
		{"non-root client within restricted", clientPod(n, sourcePVC(), req, nonRoot, endpoint{address: "10.0.0.7:8443"}, 1, ""), psapi.LevelRestricted, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			results := evaluator.EvaluatePod(psapi.LevelVersion{Level: tc.level, Version: psapi.LatestVersion()}, &tc.pod.ObjectMeta, &tc.pod.Spec)
			agg := policy.AggregateCheckResults(results)
			assert.Equal(t, tc.want, agg.Allowed, "%s: %s", tc.level, agg.ForbiddenDetail())
		})
	}
}

func TestTransferPodPlacement(t *testing.T) {
	n := namesFor("app", "data")
	req := &operation.TransferRequest{Request: operation.Request{ID: "t1", TargetNamespace: "app2", TargetName: "data"}, Type: operation.Stage}
	pin := corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"node-a"}}
	zoneA := corev1.NodeSelectorRequirement{Key: "topology.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}
	zoneB := corev1.NodeSelectorRequirement{Key: "topology.kubernetes.io/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}
	placed := map[string]string{
		"transferNodeSelector": "node-role.kubernetes.io/infra=",
		"transferTolerations":  `[{"key":"node-role.kubernetes.io/infra","operator":"Exists","effect":"NoSchedule"}]`,
		"transferAffinity":     `{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"topology.kubernetes.io/zone","operator":"In","values":["a"]}]},{"matchExpressions":[{"key":"topology.kubernetes.io/zone","operator":"In","values":["b"]}]}]}}}`,
		"transferCPULimit":     "1",
		"transferMemoryLimit":  "512Mi",
	}
	tests := []struct {
		name      string
		config    map[string]string
		client    bool
		node      string
		wantTerms []corev1.NodeSelectorTerm // nil: no required node affinity
		wantSel   map[string]string
		wantTol   int
		wantLimit bool
	}{
		{name: "default server: anywhere, no limits"},
		{name: "default client of a mounted volume: on its node", client: true, node: "node-a",
			wantTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{pin}}}},
		{name: "placed server", config: placed, wantSel: map[string]string{"node-role.kubernetes.io/infra": ""}, wantTol: 1, wantLimit: true,
			wantTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{zoneA}}, {MatchExpressions: []corev1.NodeSelectorRequirement{zoneB}}}},
		{name: "placed client of a mounted volume: its node and the configured terms", config: placed, client: true, node: "node-a",
			wantSel: map[string]string{"node-role.kubernetes.io/infra": ""}, wantTol: 1, wantLimit: true,
			wantTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{zoneA}, MatchFields: []corev1.NodeSelectorRequirement{pin}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{zoneB}, MatchFields: []corev1.NodeSelectorRequirement{pin}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfgWith(t, tc.config)
			pod := serverPod(n, "app2", "data", "t1", cfg, false, false)
			if tc.client {
				pod = clientPod(n, sourcePVC(), req, cfg, endpoint{address: "10.0.0.7:8443"}, 1, tc.node)
			}
			var terms []corev1.NodeSelectorTerm
			if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
				terms = a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			}
			assert.Equal(t, tc.wantTerms, terms)
			assert.Equal(t, tc.wantSel, pod.Spec.NodeSelector)
			assert.Len(t, pod.Spec.Tolerations, tc.wantTol)
			limits := pod.Spec.Containers[0].Resources.Limits
			if tc.wantLimit {
				assert.Equal(t, resource.MustParse("1"), limits[corev1.ResourceCPU])
				assert.Equal(t, resource.MustParse("512Mi"), limits[corev1.ResourceMemory])
			} else {
				assert.Empty(t, limits)
			}
			assert.Equal(t, resource.MustParse("100m"), pod.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU])
		})
	}
	// The configured affinity is copied, never changed: the next pod starts from it again.
	cfg := cfgWith(t, placed)
	clientPod(n, sourcePVC(), req, cfg, endpoint{address: "10.0.0.7:8443"}, 1, "node-a")
	assert.Empty(t, cfg.TransferAffinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchFields)
}
