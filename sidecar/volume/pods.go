package volume

import (
	"bytes"
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/dataplane"
)

// Pods is how the reconciler runs transfer pods: it creates them in a cluster and reads what
// a client pod reported. Their phase is read back from the cluster. apiPods goes through the
// API servers; the unit tests use a fake that plays kubelet, so every phase and outcome is
// tested in seconds.
type Pods interface {
	Create(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error)
	// Reports returns the reports in the pod's recent output, oldest first.
	Reports(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod) ([]dataplane.Report, error)
}

// apiPods runs pods through the API servers.
type apiPods struct{}

// reportLines is how much of a client's log is read for its reports: the newest progress
// report is all the status needs, the final report (done or error) is the last line.
const reportLines = 40

func (apiPods) Create(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error) {
	return c.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
}

func (apiPods) Reports(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod) ([]dataplane.Report, error) {
	tail := int64(reportLines)
	raw, err := c.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: SendContainer, TailLines: &tail}).DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var out []dataplane.Report
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if r, err := dataplane.ParseReport(line); err == nil {
			out = append(out, r)
		}
	}
	return out, nil
}
