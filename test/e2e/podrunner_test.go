//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/test/stack"
)

// The pod runner plays kubelet for ferry's transfer pods. These tests use it the way ferry's
// data mover will: an rsync daemon pod behind a LoadBalancer, a one-shot client pod, logs
// through the API server, deletion.

const rsyncPort = 8730

func transferPod(ns, name string, restart corev1.RestartPolicy, script string, mounts []corev1.VolumeMount, volumes []corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{keys.ManagedByLabel: keys.ManagedByValue, appLabel: name}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 restart,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name:                     "main",
				Image:                    "ferry-transfer:test",
				Command:                  []string{"/bin/sh", "-c", script},
				Env:                      []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
				VolumeMounts:             mounts,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				// Requests make the pod Burstable: the API server fixes the QoS class in the
				// status, which the runner must keep.
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
				}},
			}},
			Volumes: volumes,
		},
	}
}

func TestPodRunner(t *testing.T) {
	t.Parallel()
	s := stacks.Get(t, stack.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c := s.Source
	ns := s.Namespace(t, "podrunner")

	create(t, ctx, c,
		pvc(ns, "data"),
		secret(ns, "certs", map[string]string{"tls.key": "KEY", "ca.crt": "CA"}),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rsyncd"}, Data: map[string]string{
			"rsyncd.conf": "use chroot = no\nuid = root\ngid = root\n[data]\npath = /mnt/data\nread only = yes\n",
		}},
	)
	writeVolume(t, ctx, c, ns, "data", map[string]string{"payload.txt": "moved by rsync"})

	t.Run("server pod behind a LoadBalancer", func(t *testing.T) {
		server := transferPod(ns, "server", corev1.RestartPolicyAlways,
			fmt.Sprintf(`echo "serving on $POD_IP"; exec rsync --daemon --no-detach --address="$POD_IP" --port=%d --config=/mnt/conf/rsyncd.conf`, rsyncPort),
			[]corev1.VolumeMount{{Name: "data", MountPath: "/mnt/data"}, {Name: "conf", MountPath: "/mnt/conf", ReadOnly: true}},
			[]corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
				{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "rsyncd"}}}},
			})
		server.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "rsync", ContainerPort: rsyncPort}}
		server.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("rsync")}},
			PeriodSeconds: 1,
		}
		lb := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server", Labels: map[string]string{keys.ManagedByLabel: keys.ManagedByValue}},
			Spec: corev1.ServiceSpec{
				Type:     corev1.ServiceTypeLoadBalancer,
				Selector: map[string]string{appLabel: "server"},
				Ports:    []corev1.ServicePort{{Port: rsyncPort}},
			},
		}
		create(t, ctx, c, server, lb)

		var pod *corev1.Pod
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			var err error
			pod, err = c.Kube.CoreV1().Pods(ns).Get(ctx, "server", metav1.GetOptions{})
			require.NoError(ct, err)
			require.Equal(ct, c.NodeName, pod.Spec.NodeName, "bound to the runner's node")
			require.Equal(ct, corev1.PodRunning, pod.Status.Phase)
			require.True(ct, podReady(pod), "ready once rsync listens")
		}, time.Minute, 200*time.Millisecond)
		require.NotEmpty(t, pod.Status.PodIP)

		var ingress string
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			svc, err := c.Kube.CoreV1().Services(ns).Get(ctx, "server", metav1.GetOptions{})
			require.NoError(ct, err)
			require.Len(ct, svc.Status.LoadBalancer.Ingress, 1)
			ingress = svc.Status.LoadBalancer.Ingress[0].IP
		}, time.Minute, 200*time.Millisecond)
		assert.Equal(t, pod.Status.PodIP, ingress, "the LoadBalancer publishes the pod's address")
		assert.Equal(t, corev1.PodQOSBurstable, pod.Status.QOSClass, "the API server's QoS class is kept")

		dest := t.TempDir()
		out, err := exec.CommandContext(ctx, "rsync", fmt.Sprintf("rsync://%s/data/payload.txt", net.JoinHostPort(ingress, fmt.Sprint(rsyncPort))), dest+"/").CombinedOutput()
		require.NoError(t, err, "%s", out)
		got, err := os.ReadFile(filepath.Join(dest, "payload.txt"))
		require.NoError(t, err)
		assert.Equal(t, "moved by rsync", string(got), "the PVC's folder is the pod's /mnt/data")

		logs, err := c.Kubectl(ctx, "logs", "-n", ns, "server", "--tail=5")
		require.NoError(t, err)
		assert.Contains(t, logs, "serving on "+pod.Status.PodIP, "kubectl logs through the API server")

		// Deletion: the pod's processes go and the object is removed.
		require.NoError(t, c.Kube.CoreV1().Pods(ns).Delete(ctx, "server", metav1.DeleteOptions{}))
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			_, err := c.Kube.CoreV1().Pods(ns).Get(ctx, "server", metav1.GetOptions{})
			require.True(ct, apierrors.IsNotFound(err), "pod object removed, got %v", err)
		}, time.Minute, 200*time.Millisecond)
		_, err = net.DialTimeout("tcp", net.JoinHostPort(ingress, fmt.Sprint(rsyncPort)), time.Second)
		assert.Error(t, err, "the rsync daemon is gone with its pod")
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			svc, err := c.Kube.CoreV1().Services(ns).Get(ctx, "server", metav1.GetOptions{})
			require.NoError(ct, err)
			require.Empty(ct, svc.Status.LoadBalancer.Ingress, "no pod, no address")
		}, time.Minute, 200*time.Millisecond)
	})

	t.Run("one-shot pod reports its exit code and logs", func(t *testing.T) {
		client := transferPod(ns, "client", corev1.RestartPolicyNever,
			// One stream (stderr) keeps the order of lines fixed: stdout and stderr are read apart.
			`exec >&2; echo "key=$(cat /mnt/certs/tls.key)"; ls /mnt/certs; echo "cannot reach target"; exit 3`,
			[]corev1.VolumeMount{{Name: "certs", MountPath: "/mnt/certs", ReadOnly: true}},
			[]corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "certs", DefaultMode: ptr.To[int32](0o400)}}}})
		create(t, ctx, c, client)
		pod := waitPodPhase(t, ctx, c, ns, "client", corev1.PodFailed)
		require.Len(t, pod.Status.ContainerStatuses, 1)
		term := pod.Status.ContainerStatuses[0].State.Terminated
		require.NotNil(t, term)
		assert.Equal(t, int32(3), term.ExitCode)
		assert.Equal(t, "Error", term.Reason)
		assert.Contains(t, term.Message, "cannot reach target", "FallbackToLogsOnError")

		raw, err := c.Kube.CoreV1().Pods(ns).GetLogs("client", &corev1.PodLogOptions{}).DoRaw(ctx)
		require.NoError(t, err)
		assert.Equal(t, "key=KEY\nca.crt\ntls.key\ncannot reach target\n", string(raw))
		raw, err = c.Kube.CoreV1().Pods(ns).GetLogs("client", &corev1.PodLogOptions{TailLines: ptr.To[int64](1), Timestamps: true}).DoRaw(ctx)
		require.NoError(t, err)
		assert.Regexp(t, `^\d{4}-\d\d-\d\dT\S+ cannot reach target\n$`, string(raw))
		stream, err := c.Kube.CoreV1().Pods(ns).GetLogs("client", &corev1.PodLogOptions{Follow: true}).Stream(ctx)
		require.NoError(t, err)
		followed, err := io.ReadAll(stream)
		stream.Close()
		require.NoError(t, err)
		assert.Equal(t, "key=KEY\nca.crt\ntls.key\ncannot reach target\n", string(followed), "follow ends when the container has")
	})

	t.Run("mount outside /mnt fails the pod with a clear message", func(t *testing.T) {
		bad := transferPod(ns, "bad-mount", corev1.RestartPolicyNever, "true",
			[]corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			[]corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}})
		create(t, ctx, c, bad)
		pod := waitPodPhase(t, ctx, c, ns, "bad-mount", corev1.PodFailed)
		assert.Equal(t, "UnsupportedMountPath", pod.Status.Reason)
		assert.Contains(t, pod.Status.Message, `"/data"`)
		assert.Contains(t, pod.Status.Message, "/mnt/")
	})

	t.Run("pods that are not ferry's are left alone", func(t *testing.T) {
		other := transferPod(ns, "not-ferry", corev1.RestartPolicyNever, "true", nil, nil)
		other.Labels = map[string]string{appLabel: "not-ferry"}
		create(t, ctx, c, other)
		time.Sleep(2 * time.Second)
		pod, err := c.Kube.CoreV1().Pods(ns).Get(ctx, "not-ferry", metav1.GetOptions{})
		require.NoError(t, err)
		assert.Empty(t, pod.Spec.NodeName, "not scheduled")
		assert.Equal(t, corev1.PodPending, pod.Status.Phase)
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitPodPhase(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name string, phase corev1.PodPhase) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		var err error
		pod, err = c.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(ct, err)
		require.Equal(ct, phase, pod.Status.Phase, "pod %s/%s: %s %s", ns, name, pod.Status.Reason, strings.TrimSpace(pod.Status.Message))
	}, time.Minute, 200*time.Millisecond)
	return pod
}
