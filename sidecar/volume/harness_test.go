package volume

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
	"github.com/ferry-dev/ferry/sidecar"
)

// The reconciler's unit tests run every phase against fake clusters (client-go's fakes) with a
// fake clock, and a fake kubelet (fakePods and settle) that runs transfer pods the way a test
// says. The transfers themselves are proven on the local stack (test/e2e).

// harness is a reconciler wired to a fake source and target cluster.
type harness struct {
	*Reconciler
	pvcs     client.Client // the source's PVCs, as the manager's cache serves them
	source   *testutil.Cluster
	target   *testutil.Cluster
	recorder *record.FakeRecorder
	clock    *clocktesting.FakePassiveClock
	pods     *fakePods
	// server decides how the fake kubelet runs server pods (default: running and ready).
	server func(p *corev1.Pod) corev1.PodStatus
	// serverEnd decides how a running server pod ends once its transfer's client pod succeeded
	// (default: Succeeded, as serve exits 0 after the client's completion report); nil status:
	// it keeps running.
	serverEnd func(p *corev1.Pod) *corev1.PodStatus
	// client decides how it runs client pod number attempt (default: succeeds at once with a
	// done report).
	client func(attempt int) clientRun
}

// clientRun is what a client pod does in the fake kubelet.
type clientRun struct {
	phase   corev1.PodPhase
	reports []dataplane.Report
	message string // termination message of a failed pod
	exit    int32  // exit code of a failed pod (default 12)
}

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// requestKey is the key Velero's plugins sign requests with in these tests.
var requestKey = []byte("0123456789abcdef0123456789abcdef")

// sign signs the PVC's transfer request as Velero's plugin (or an admin) would, issued at t0.
func sign(t *testing.T, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	if _, ok := pvc.Annotations[keys.TransferID]; !ok {
		return
	}
	sig, err := operation.TransferKeys.Sign(requestKey, pvc.UID, pvc.Namespace, pvc.Name, pvc.Annotations, t0)
	require.NoError(t, err)
	pvc.Annotations[keys.TransferSignature] = sig
}

// newHarness builds fake clusters: the source holds namespace app, the request signing key,
// ferry-config (cfg; nil for none) and the given objects; the target holds targetObjs. The
// PVC's request is signed (newUnsignedHarness leaves it as it is).
func newHarness(t *testing.T, cfg map[string]string, pvc *corev1.PersistentVolumeClaim, sourceObjs []runtime.Object, targetObjs ...runtime.Object) *harness {
	t.Helper()
	sign(t, pvc)
	return newUnsignedHarness(t, cfg, pvc, sourceObjs, targetObjs...)
}

func newUnsignedHarness(t *testing.T, cfg map[string]string, pvc *corev1.PersistentVolumeClaim, sourceObjs []runtime.Object, targetObjs ...runtime.Object) *harness {
	t.Helper()
	objs := append([]runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: operation.RequestKeySecret},
			Data: map[string][]byte{operation.RequestKeyField: requestKey}},
	}, sourceObjs...)
	if cfg != nil {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: config.ConfigMapName}, Data: cfg})
	}
	var workloads, core []runtime.Object
	for _, o := range objs {
		if _, ok := o.(*unstructured.Unstructured); ok {
			workloads = append(workloads, o)
		} else {
			core = append(core, o)
		}
	}
	source := testutil.NewCluster(testutil.WithObjects(core...), testutil.WithDynamicObjects(workloads...))
	target := testutil.NewCluster(testutil.WithObjects(targetObjs...))
	target.Clients.Config = &rest.Config{Host: "https://target.example"}
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	pvcs := crfake.NewClientBuilder().WithScheme(scheme).WithObjects(pvc).Build()
	h := &harness{
		pvcs: pvcs, source: source, target: target,
		recorder: record.NewFakeRecorder(1000),
		clock:    clocktesting.NewFakePassiveClock(t0),
		pods:     &fakePods{reports: map[string][]dataplane.Report{}},
	}
	h.Reconciler = &Reconciler{
		Env: &sidecar.Env{Source: source.Clients, Cache: pvcs, Targets: sidecar.FixedTarget{Clients: target.Clients},
			Recorder: h.recorder, Clock: h.clock},
		Pods:      h.pods,
		admission: newAdmission(),
	}
	h.server = func(*corev1.Pod) corev1.PodStatus { return runningReady() }
	h.serverEnd = func(*corev1.Pod) *corev1.PodStatus { return &corev1.PodStatus{Phase: corev1.PodSucceeded} }
	h.client = func(int) clientRun { return succeeded() }
	return h
}

func runningReady() corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
}

func succeeded() clientRun {
	return clientRun{phase: corev1.PodSucceeded, reports: []dataplane.Report{
		{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 50, BytesTotal: 100, Percent: 50, FilesTotal: 3},
		{Type: dataplane.ReportDone, BytesTotal: 100, BytesSent: 100, Files: 3, FilesTransferred: 3, Attempts: 1},
	}}
}

// sourcePVC is the PVC app/data, bound, RWO, class standard, with the given annotations.
func sourcePVC(ann ...string) *corev1.PersistentVolumeClaim {
	a := map[string]string{}
	for i := 0; i+1 < len(ann); i += 2 {
		a[ann[i]] = ann[i+1]
	}
	sc := "standard"
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data", UID: "pvc-uid", Annotations: a},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &sc, VolumeName: "pv-1",
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

func storageClass(name string, isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "kubernetes.io/host-path"}
	if isDefault {
		sc.Annotations = map[string]string{keys.DefaultStorageClass: "true"}
	}
	return sc
}

// reconcile runs one reconcile of app/data.
func (h *harness) reconcile(t *testing.T) ctrl.Result {
	t.Helper()
	res, err := h.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "app", Name: "data"}})
	require.NoError(t, err)
	return res
}

// run reconciles, lets the fake clusters settle and the clock move a poll on, until the
// transfer reaches phase until (or any terminal phase), at most n rounds.
func (h *harness) run(t *testing.T, n int, until operation.Phase) *operation.TransferStatus {
	t.Helper()
	var st *operation.TransferStatus
	for range n {
		h.reconcile(t)
		h.settle(t)
		h.clock.SetTime(h.clock.Now().Add(sidecar.Poll))
		st = h.status(t)
		if st != nil && (st.Phase == until || st.Phase.Terminal()) {
			break
		}
	}
	return st
}

// status reads the PVC's transfer status.
func (h *harness) status(t *testing.T) *operation.TransferStatus {
	t.Helper()
	st, err := operation.ParseTransferStatus(h.pvc(t).Annotations)
	require.NoError(t, err)
	return st
}

func (h *harness) pvc(t *testing.T) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc corev1.PersistentVolumeClaim
	require.NoError(t, h.pvcs.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: "data"}, &pvc))
	return &pvc
}

// annotate changes the PVC's annotations as a backup action or an admin would: the request is
// signed again (empty value: delete the key).
func (h *harness) annotate(t *testing.T, kv ...string) {
	t.Helper()
	h.change(t, true, kv...)
}

// tamper changes the PVC's annotations as a tenant would: nobody signs.
func (h *harness) tamper(t *testing.T, kv ...string) {
	t.Helper()
	h.change(t, false, kv...)
}

func (h *harness) change(t *testing.T, signed bool, kv ...string) {
	t.Helper()
	pvc := h.pvc(t)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(pvc.Annotations, kv[i])
		} else {
			pvc.Annotations[kv[i]] = kv[i+1]
		}
	}
	if signed {
		sign(t, pvc)
	}
	require.NoError(t, h.pvcs.Update(context.Background(), pvc))
}

// events drains the Events recorded so far, one per line.
func (h *harness) events() string {
	var all []string
	for {
		select {
		case e := <-h.recorder.Events:
			all = append(all, e)
		default:
			return strings.Join(all, "\n")
		}
	}
}

// settle plays the clusters' controllers and kubelet: Services get addresses, pods that have
// no status yet get the one the test decides.
func (h *harness) settle(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []kubernetes.Interface{h.source.Kube, h.target.Kube} {
		svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, s := range svcs.Items {
			if s.Spec.ClusterIP != "" {
				continue
			}
			s.Spec.ClusterIP = "10.96.0.10"
			if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
				s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
			}
			if s.Spec.Type != corev1.ServiceTypeClusterIP {
				s.Spec.Ports[0].NodePort = 30443
			}
			_, err := c.CoreV1().Services(s.Namespace).Update(ctx, &s, metav1.UpdateOptions{})
			require.NoError(t, err)
		}
		pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, p := range pods.Items {
			if p.Status.Phase != "" || p.Labels[keys.ManagedByLabel] != keys.ManagedByValue {
				continue
			}
			if p.Labels[keys.TransferRole] == RoleServer {
				p.Status = h.server(&p)
			} else {
				run := h.client(podAttempt(&p))
				p.Status = corev1.PodStatus{Phase: run.phase}
				if run.phase == corev1.PodFailed {
					exit := run.exit
					if exit == 0 {
						exit = 12
					}
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: SendContainer, State: corev1.ContainerState{
						Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Message: run.message}}}}
				}
				h.pods.setReports(p.Name, run.reports)
			}
			_, err := c.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, &p, metav1.UpdateOptions{})
			require.NoError(t, err)
		}
	}
	// Servers end once their client has succeeded (clients live on the source, listed first).
	clients, err := h.source.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: keys.TransferRole + "=" + RoleClient})
	require.NoError(t, err)
	done := map[string]bool{}
	for _, p := range clients.Items {
		if p.Status.Phase == corev1.PodSucceeded {
			done[p.Labels[keys.TransferIDLabel]] = true
		}
	}
	servers, err := h.target.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: keys.TransferRole + "=" + RoleServer})
	require.NoError(t, err)
	for _, p := range servers.Items {
		if p.Status.Phase != corev1.PodRunning || !done[p.Labels[keys.TransferIDLabel]] {
			continue
		}
		if st := h.serverEnd(&p); st != nil {
			p.Status = *st
			_, err := h.target.Kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, &p, metav1.UpdateOptions{})
			require.NoError(t, err)
		}
	}
}

// transferPods lists ferry's pods of a role in one cluster.
func transferPods(t *testing.T, c kubernetes.Interface, role string) []corev1.Pod {
	t.Helper()
	pods, err := c.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{LabelSelector: keys.TransferRole + "=" + role})
	require.NoError(t, err)
	return pods.Items
}

// fakePods creates pods in the fake clusters (naming them, as the API server does for
// generateName) and serves the reports the fake kubelet gave each.
type fakePods struct {
	mu      sync.Mutex
	n       int
	reports map[string][]dataplane.Report
	created []string
}

func (f *fakePods) Create(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod) (*corev1.Pod, error) {
	f.mu.Lock()
	f.n++
	pod = pod.DeepCopy()
	if pod.Name == "" {
		pod.Name = fmt.Sprintf("%s%05d", pod.GenerateName, f.n)
	}
	f.created = append(f.created, pod.Name)
	f.mu.Unlock()
	return c.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
}

func (f *fakePods) Reports(_ context.Context, _ kubernetes.Interface, pod *corev1.Pod) ([]dataplane.Report, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reports[pod.Name]
	if !ok {
		return nil, fmt.Errorf("container %q in pod %q is waiting to start", SendContainer, pod.Name)
	}
	return r, nil
}

func (f *fakePods) setReports(pod string, r []dataplane.Report) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports[pod] = r
}
