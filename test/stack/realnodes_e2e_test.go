//go:build e2e

package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ferry-dev/ferry/test/images"
)

// A stack with real nodes: both nodes Ready with kubelet v1.33.13 and containerd 1.6; an app
// pod (non-root, read-only root, no capabilities, a PVC, an fsGroup) serves a file that a pod
// of the other cluster fetches through a NodePort, a LoadBalancer, a ClusterIP and the pod
// address; a pod
// reads the API with its service-account token; logs, exec and exit codes come from kubelet;
// and after Stop nothing of the nodes is left on the machine.
func TestRealNodes(t *testing.T) {
	linksBefore := hostLinks(t)
	sysctlsBefore := readSysctls(t)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Logf: t.Logf})
	require.NoError(t, err, "starting a stack with real nodes")
	t.Logf("stack with real nodes up in %s", time.Since(start).Round(100*time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			if t.Failed() {
				t.Log(s.diagnosticsText())
			}
			_ = s.Stop()
		}
	}()

	for _, c := range s.Clusters() {
		out, err := c.Kubectl(ctx, "get", "nodes", "-o", "wide")
		require.NoError(t, err)
		t.Logf("%s cluster: kubectl get nodes -o wide\n%s", c.Name, out)
		assert.Regexp(t, fmt.Sprintf(`(?m)^%s\s+Ready\s+\S+\s+\S+\s+v1\.33\.13\s+%s\s.*containerd://1\.6\.`, c.NodeName, c.NodeIP()), out)
	}

	src, tgt := s.Source, s.Target
	app := UniqueName("app")
	for _, c := range s.Clusters() {
		require.NoError(t, c.CreateNamespace(ctx, app, nil))
		waitDefaultServiceAccount(t, ctx, c, app)
	}

	// The app: uid 1234, read-only root, no capabilities, a host-path PVC made writable by an
	// init container (the host-path provisioner creates root-owned folders and fsGroup is not
	// applied to host paths), serving the folder with busybox httpd.
	_, err = tgt.Kube.CoreV1().PersistentVolumeClaims(app).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	restricted := &corev1.SecurityContext{
		RunAsUser: ptr.To[int64](1234), RunAsGroup: ptr.To[int64](1234), RunAsNonRoot: ptr.To(true),
		ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	web := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2345)},
			InitContainers: []corev1.Container{{
				Name: "own", Image: tgt.Image(images.AppName),
				Command: []string{"sh", "-c", "chown 1234:2345 /data && chmod 2770 /data"},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser:    ptr.To[int64](0),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN", "FOWNER"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Containers: []corev1.Container{{
				Name: "httpd", Image: tgt.Image(images.AppName),
				Command: []string{"sh", "-c", `id > /data/id.txt && echo "hello from the target" > /data/index.html && exec httpd -f -v -p 8080 -h /data`},
				Ports:   []corev1.ContainerPort{{ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/index.html", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1},
				SecurityContext: restricted,
				VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}},
		},
	}
	_, err = tgt.Kube.CoreV1().Pods(app).Create(ctx, web, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, typ := range []corev1.ServiceType{corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer} {
		_, err = tgt.Kube.CoreV1().Services(app).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web-" + strings.ToLower(string(typ))},
			Spec: corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	webPod := waitPod(t, ctx, tgt, app, "web", func(p *corev1.Pod) bool { return podReady(p) })
	assert.Equal(t, tgt.NodeName, webPod.Spec.NodeName, "bound by the scheduler")
	assert.True(t, strings.HasPrefix(webPod.Status.PodIP, strings.TrimSuffix(tgt.PodCIDR(), "0/24")), "pod IP %s in %s", webPod.Status.PodIP, tgt.PodCIDR())

	// exec through the API server, the egress proxy and the kubelet.
	id, err := tgt.Kubectl(ctx, "-n", app, "exec", "web", "-c", "httpd", "--", "cat", "/data/id.txt")
	require.NoError(t, err)
	assert.Contains(t, id, "uid=1234")
	assert.Contains(t, id, "2345", "fsGroup is a supplementary group")
	caps, err := tgt.Kubectl(ctx, "-n", app, "exec", "web", "-c", "httpd", "--", "grep", "CapEff", "/proc/self/status")
	require.NoError(t, err)
	assert.Contains(t, caps, "0000000000000000", "no capabilities")
	_, err = tgt.Kubectl(ctx, "-n", app, "exec", "web", "-c", "httpd", "--", "touch", "/written")
	assert.ErrorContains(t, err, "Read-only file system")
	tokenGroup, err := tgt.Kubectl(ctx, "-n", app, "exec", "web", "-c", "httpd", "--", "sh", "-c",
		"stat -L -c %g /var/run/secrets/kubernetes.io/serviceaccount/token")
	require.NoError(t, err)
	assert.Equal(t, "2345", strings.TrimSpace(tokenGroup), "fsGroup owns the projected token")

	np, err := tgt.Kube.CoreV1().Services(app).Get(ctx, "web-nodeport", metav1.GetOptions{})
	require.NoError(t, err)
	nodePort := np.Spec.Ports[0].NodePort
	lb := waitLoadBalancer(t, ctx, tgt, app, "web-loadbalancer")

	// A pod of the source cluster fetches the file through each way in.
	urls := []string{
		fmt.Sprintf("http://%s:%d/index.html", tgt.NodeIP(), nodePort),
		fmt.Sprintf("http://%s/index.html", np.Spec.ClusterIP), // routed to the target node, where kube-proxy takes it
		fmt.Sprintf("http://%s/index.html", lb),
		fmt.Sprintf("http://%s:8080/index.html", webPod.Status.PodIP),
	}
	var script []string
	for _, u := range urls {
		// busybox 1.35's wget -T crashes (SIGSEGV, also on the host): timeout bounds it instead.
		script = append(script, fmt.Sprintf("echo %s; timeout 15 wget -q -O- %s", u, u))
	}
	fetch := oneShot(t, ctx, src, app, "fetch", strings.Join(script, " && "), restricted)
	assert.Equal(t, int32(0), exitCode(fetch))
	logs, err := src.Kubectl(ctx, "-n", app, "logs", "fetch")
	require.NoError(t, err)
	for _, u := range urls {
		assert.Contains(t, logs, u+"\nhello from the target\n")
	}

	// In-cluster config: the service-account token, the cluster CA and the kubernetes Service.
	_, err = src.Kube.CoreV1().ConfigMaps(app).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"colour": "teal"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.Kube.RbacV1().Roles(app).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-settings"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.Kube.RbacV1().RoleBindings(app).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "read-settings"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-settings"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: app}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	get := oneShot(t, ctx, src, app, "incluster", "kube-get /api/v1/namespaces/"+app+"/configmaps/settings", restricted)
	logs, err = src.Kubectl(ctx, "-n", app, "logs", "incluster")
	require.NoError(t, err)
	assert.Equal(t, int32(0), exitCode(get), logs)
	assert.Contains(t, logs, `"colour":"teal"`)

	// Exit codes and logs of a failing container come from the kubelet.
	fail := oneShot(t, ctx, src, app, "fails", "echo going down; exit 3", restricted)
	assert.Equal(t, int32(3), exitCode(fail))
	logs, err = src.Kubectl(ctx, "-n", app, "logs", "fails")
	require.NoError(t, err)
	assert.Equal(t, "going down\n", logs)

	// ferry's images run as their Dockerfiles say: the data mover as 65532 with Debian's rsync and
	// stunnel4 and its own certs subcommand; the plugin image copies its binary into /target.
	dm := runImage(t, ctx, src, app, "datamover", src.Image(images.DatamoverName), []string{"sh", "-c",
		"id -u && rsync --version | head -1 && stunnel4 -version 2>&1 | grep '^stunnel' && ferry-datamover certs --out /work/certs && ls /work/certs/server"},
		nil, "/work")
	logs, err = src.Kubectl(ctx, "-n", app, "logs", "datamover")
	require.NoError(t, err)
	assert.Equal(t, int32(0), exitCode(dm), logs)
	assert.Regexp(t, `^65532\nrsync\s+version 3\.[\s\S]*\nstunnel 5\.[\s\S]*ca\.crt\ntls\.crt\ntls\.key\n$`, logs)
	plugins := runImage(t, ctx, src, app, "plugins", src.Image(images.PluginsName), nil, nil, "/target")
	assert.Equal(t, int32(0), exitCode(plugins), "cp /plugins/ferry-plugins /target/.")

	// Stop leaves nothing of the nodes on the machine.
	runtimeDir := s.nodeAddrs.runtimeDir()
	stackDir := s.Dir
	var cgroups, sandboxes []string
	for _, c := range s.Clusters() {
		cgroups = append(cgroups, c.node.cgroup)
		sandboxes = append(sandboxes, sandboxIDs(c.node.containerdState())...)
	}
	require.NotEmpty(t, sandboxes)
	links := 0
	entries, _ := os.ReadDir(containerLogLinks)
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(containerLogLinks, e.Name())); err == nil && strings.HasPrefix(target, runtimeDir+"/") {
			links++
		}
	}
	require.NotZero(t, links, "kubelet links the containers' logs into %s", containerLogLinks)
	stopStart := time.Now()
	stopped = true
	require.NoError(t, s.Stop())
	t.Logf("stack stopped in %s", time.Since(stopStart).Round(100*time.Millisecond))
	assertNothingLeft(t, stackDir, runtimeDir, cgroups, sandboxes, linksBefore)
	if others := liveClaims(); len(others) > 0 {
		t.Logf("other stacks with real nodes run (%v): the host sysctls stay as kubelet set them until the last stops", others)
	} else {
		assert.Equal(t, sysctlsBefore, readSysctls(t), "host sysctls kubelet changed are put back")
	}
}

func readSysctls(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, k := range savedSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		require.NoError(t, err)
		m[k] = strings.TrimSpace(string(v))
	}
	return m
}

func waitDefaultServiceAccount(t *testing.T, ctx context.Context, c *Cluster, ns string) {
	t.Helper()
	require.NoError(t, c.poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := c.Kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}), "service account default in %s", ns)
}

func waitPod(t *testing.T, ctx context.Context, c *Cluster, ns, name string, done func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	var pod *corev1.Pod
	err := c.poll(ctx, func(ctx context.Context) (bool, error) {
		p, err := c.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return done(p), nil
	})
	if err != nil {
		describe, _ := c.Kubectl(context.Background(), "-n", ns, "describe", "pod", name)
		t.Fatalf("pod %s/%s in the %s cluster: %v\n%s", ns, name, c.Name, err, describe)
	}
	return pod
}

// oneShot runs a command in a pod of the app image (restartPolicy Never) and returns the pod
// once it has finished.
func oneShot(t *testing.T, ctx context.Context, c *Cluster, ns, name, script string, sc *corev1.SecurityContext) *corev1.Pod {
	t.Helper()
	_, err := c.Kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: c.Image(images.AppName), Command: []string{"sh", "-c", script}, SecurityContext: sc,
			}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return waitPod(t, ctx, c, ns, name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
}

func exitCode(p *corev1.Pod) int32 {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Terminated != nil {
			return cs.State.Terminated.ExitCode
		}
	}
	return -1
}

func waitLoadBalancer(t *testing.T, ctx context.Context, c *Cluster, ns, name string) string {
	t.Helper()
	var ip string
	require.NoError(t, c.poll(ctx, func(ctx context.Context) (bool, error) {
		svc, err := c.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
			return false, nil
		}
		ip = svc.Status.LoadBalancer.Ingress[0].IP
		return true, nil
	}), "LoadBalancer address of %s/%s", ns, name)
	return ip
}

func hostLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	require.NoError(t, err)
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}

// assertNothingLeft checks the machine for anything of a stopped stack's nodes: mounts under
// its folders, network namespaces, host links, cgroups, processes and CNI results.
func assertNothingLeft(t *testing.T, stackDir, runtimeDir string, cgroups, sandboxes, linksBefore []string) {
	t.Helper()
	assert.Empty(t, mountsUnder(stackDir), "mounts under the stack folder")
	assert.Empty(t, mountsUnder(runtimeDir), "mounts under the runtime folder")
	assert.NoDirExists(t, runtimeDir)
	out, err := exec.Command("ip", "netns", "list").Output()
	require.NoError(t, err)
	mine := fmt.Sprintf("ferry-%d-", os.Getpid())
	for _, l := range strings.Split(string(out), "\n") {
		assert.False(t, strings.HasPrefix(l, mine), "network namespace left: %s", l)
	}
	assert.ElementsMatch(t, linksBefore, hostLinks(t), "host network links")
	for _, cg := range cgroups {
		for _, h := range hierarchies() {
			assert.NoDirExists(t, filepath.Join(h, cg))
		}
		results, _ := filepath.Glob(filepath.Join(cniResultsDir, cg+"-*"))
		assert.Empty(t, results, "CNI results")
	}
	for _, id := range sandboxes {
		results, _ := filepath.Glob(filepath.Join(cniResultsDir, "*-"+id+"-*"))
		assert.Empty(t, results, "CNI results of sandbox %s", id)
	}
	links, _ := os.ReadDir(containerLogLinks)
	for _, l := range links {
		if target, err := os.Readlink(filepath.Join(containerLogLinks, l.Name())); err == nil && strings.HasPrefix(target, runtimeDir+"/") {
			t.Errorf("container log link left: %s -> %s", l.Name(), target)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, _ := os.ReadFile(p)
		cmd := strings.ReplaceAll(string(data), "\x00", " ")
		if strings.Contains(cmd, runtimeDir) || strings.Contains(cmd, stackDir) {
			t.Errorf("process left: %s: %s", filepath.Dir(p), cmd)
		}
	}
}

// orphanEnv makes the test binary a child that starts a stack with real nodes and a running pod,
// prints where things are, and waits to be killed.
const orphanEnv = "FERRY_ORPHAN_STACK"

type orphanInfo struct {
	Pid        int
	StackDir   string
	RuntimeDir string
	Cgroups    []string
}

// A stack whose process is killed (SIGKILL: no Stop) leaves its containers running under their
// shims, and their mounts; RemoveOrphans, as the next stack or `make stack-down` runs it,
// removes all of it.
func TestRealNodesRemoveOrphans(t *testing.T) {
	if os.Getenv(orphanEnv) != "" {
		runOrphanStack(t)
		return
	}
	linksBefore := hostLinks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestRealNodesRemoveOrphans$", "-test.v")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	var info orphanInfo
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "ORPHAN "); ok {
			require.NoError(t, json.Unmarshal([]byte(line), &info))
			break
		}
		t.Log("child: " + sc.Text())
	}
	require.NotZero(t, info.Pid, "the child stack did not come up")
	go func() { _, _ = io.Copy(io.Discard, out) }()
	require.NotEmpty(t, cgroupPidsOf(info.Cgroups), "the child's containers run")

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	// Its kubelet and containerd die with it (parent-death signal); the shims and containers do not.
	assert.NotEmpty(t, cgroupPidsOf(info.Cgroups), "containers outlive a killed stack")
	assert.NotEmpty(t, mountsUnder(info.RuntimeDir), "and so do their mounts")
	links, _ := filepath.Glob(filepath.Join(containerLogLinks, "*"))
	assert.NotEmpty(t, links, "kubelet linked the container logs into /var/log/containers")

	var sandboxes []string
	for _, st := range []string{"source", "target"} {
		sandboxes = append(sandboxes, sandboxIDs(filepath.Join(info.RuntimeDir, st, "containerd"))...)
	}
	require.NotEmpty(t, sandboxes)
	RemoveOrphans()
	defer os.RemoveAll(info.StackDir) // a killed stack cannot remove its temporary folder
	assertNothingLeft(t, info.StackDir, info.RuntimeDir, info.Cgroups, sandboxes, linksBefore)
	out2, err := exec.Command("ip", "netns", "list").Output()
	require.NoError(t, err)
	assert.NotContains(t, string(out2), fmt.Sprintf("ferry-%d-", info.Pid), "the killed stack's namespaces")
}

func cgroupPidsOf(cgroups []string) []int {
	var pids []int
	for _, cg := range cgroups {
		pids = append(pids, cgroupPids(cg)...)
	}
	return pids
}

func runOrphanStack(t *testing.T) {
	ctx := context.Background()
	s, err := Start(ctx, Options{Logf: t.Logf})
	require.NoError(t, err)
	c := s.Source
	ns := UniqueName("orphan")
	require.NoError(t, c.CreateNamespace(ctx, ns, nil))
	waitDefaultServiceAccount(t, ctx, c, ns)
	_, err = c.Kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "main", Image: c.Image(images.AppName), Command: []string{"sleep", "3600"},
		}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	waitPod(t, ctx, c, ns, "sleeper", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	info := orphanInfo{Pid: os.Getpid(), StackDir: s.Dir, RuntimeDir: s.nodeAddrs.runtimeDir()}
	for _, c := range s.Clusters() {
		info.Cgroups = append(info.Cgroups, c.node.cgroup)
	}
	data, err := json.Marshal(info)
	require.NoError(t, err)
	fmt.Printf("ORPHAN %s\n", data)
	select {} // until killed
}

// runImage runs an image once (its own entrypoint unless command is given; restartPolicy Never,
// read-only root, no capabilities, the image's own user) with an emptyDir at dir, and returns the
// finished pod.
func runImage(t *testing.T, ctx context.Context, c *Cluster, ns, name, image string, command, args []string, dir string) *corev1.Pod {
	t.Helper()
	_, err := c.Kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: image, Command: command, Args: args,
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "work", MountPath: dir}},
			}},
			Volumes: []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	return waitPod(t, ctx, c, ns, name, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
}

// liveClaims lists the address blocks claimed by running stacks.
func liveClaims() []string {
	var live []string
	claims, _ := filepath.Glob(filepath.Join(runtimeRoot, "block-*"))
	for _, c := range claims {
		if target, err := os.Readlink(c); err == nil && pidAlive(ownerPid(target)) {
			live = append(live, target)
		}
	}
	return live
}
