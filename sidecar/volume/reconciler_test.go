package volume

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	k8stesting "k8s.io/client-go/testing"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
	"github.com/ferry-dev/ferry/sidecar"
)

// clusterIP: every test but the endpoint ones reaches the server through a ClusterIP Service.
var clusterIP = map[string]string{"endpointType": "ClusterIP"}

func TestReconcileBadInput(t *testing.T) {
	tests := []struct {
		name      string
		pvc       *corev1.PersistentVolumeClaim
		config    map[string]string
		target    []runtime.Object
		wantMsg   []string
		wantEvent string
	}{
		{
			name:      "malformed request",
			pvc:       sourcePVC(keys.TransferID, "t1", keys.TransferType, "later"),
			wantMsg:   []string{"PVC app/data has a malformed transfer request", keys.TransferType},
			wantEvent: "TransferFailed",
		},
		{
			name:      "invalid ferry-config",
			pvc:       sourcePVC(keys.TransferID, "t1"),
			config:    map[string]string{"concurrency": "lots"},
			wantMsg:   []string{"velero/ferry-config", `key "concurrency"`},
			wantEvent: "TransferFailed",
		},
		{
			name:      "storage class unknown on the target",
			pvc:       sourcePVC(keys.TransferID, "t1", keys.TransferStorageClass, "gold"),
			config:    clusterIP,
			target:    []runtime.Object{storageClass("standard", true), storageClass("fast", false)},
			wantMsg:   []string{`storage class "gold" does not exist on the target cluster (it has: fast, standard)`},
			wantEvent: "TransferFailed",
		},
		{
			name: "no class and no default on the target",
			pvc: func() *corev1.PersistentVolumeClaim {
				p := sourcePVC(keys.TransferID, "t1")
				p.Spec.StorageClassName = nil
				return p
			}(),
			config:    clusterIP,
			target:    []runtime.Object{storageClass("fast", false)},
			wantMsg:   []string{"no default storage class"},
			wantEvent: "TransferFailed",
		},
		{
			name: "block volume with non-root transfer pods",
			pvc: func() *corev1.PersistentVolumeClaim {
				p := sourcePVC(keys.TransferID, "t1")
				block := corev1.PersistentVolumeBlock
				p.Spec.VolumeMode = &block
				return p
			}(),
			config:    map[string]string{"endpointType": "ClusterIP", "transferRunAsRoot": "false"},
			target:    []runtime.Object{storageClass("standard", true)},
			wantMsg:   []string{"PVC app/data is a block volume", "transferRunAsRoot: true"},
			wantEvent: "TransferFailed",
		},
		{
			name:      "malformed per-PVC choice of a hand-written request",
			pvc:       sourcePVC(keys.TransferID, "t1", keys.Verify, "perhaps"),
			config:    clusterIP,
			wantMsg:   []string{keys.Verify, "want true or false"},
			wantEvent: "TransferFailed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.config, tc.pvc, nil, tc.target...)
			st := h.run(t, 10, operation.PhaseFailed)
			require.NotNil(t, st)
			assert.Equal(t, operation.PhaseFailed, st.Phase)
			for _, w := range tc.wantMsg {
				assert.Contains(t, st.Message, w)
			}
			assert.Contains(t, h.events(), tc.wantEvent)
			// Nothing was created on the target.
			pvcs, err := h.target.Kube.CoreV1().PersistentVolumeClaims("").List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, pvcs.Items)
			assert.Empty(t, transferPods(t, h.target.Kube, RoleServer))
		})
	}
}

func TestReconcileMissingTargetSecret(t *testing.T) {
	h := newHarness(t, map[string]string{"targetKubeconfigSecret": "nowhere"}, sourcePVC(keys.TransferID, "t1"), nil)
	h.Targets = &kube.Targets{Source: h.source.Clients}
	st := h.run(t, 10, operation.PhaseFailed)
	require.NotNil(t, st)
	assert.Equal(t, operation.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "Secret velero/nowhere does not exist")
	assert.Contains(t, st.Message, "kubectl -n velero create secret generic nowhere --from-file=kubeconfig=")
}

// TestPhasePending: a new request is accepted; it waits for a slot while ferry-config's
// concurrency is used up, and gets one when a slot frees.
func TestPhasePending(t *testing.T) {
	other := sourcePVC(keys.TransferID, "o1")
	other.Name = "other"
	h := newHarness(t, map[string]string{"concurrency": "1", "endpointType": "ClusterIP"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	busy := operation.TransferStatus{Header: operation.Header{ID: "o1", Phase: operation.PhaseTransferring}}
	other.Annotations[keys.TransferStatus] = operation.Encode(&busy)
	require.NoError(t, h.pvcs.Create(context.Background(), other))

	h.reconcile(t)
	st := h.status(t)
	assert.Equal(t, operation.PhasePending, st.Phase)
	assert.Equal(t, "t1", st.ID)
	assert.Equal(t, "app/data", st.Target)
	assert.Equal(t, t0, st.Started.Time)
	assert.Contains(t, h.events(), "TransferAccepted stage transfer t1 to app/data accepted")

	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhasePending, st.Phase)
	assert.Equal(t, "waiting for a transfer slot (1 of 1 in use)", st.Message)
	before := h.pvc(t).Annotations[keys.TransferStatus]
	h.reconcile(t)
	assert.Equal(t, before, h.pvc(t).Annotations[keys.TransferStatus], "an unchanged status is not written again")

	busy.Phase = operation.PhaseCompleted
	other.Annotations[keys.TransferStatus] = operation.Encode(&busy)
	require.NoError(t, h.pvcs.Update(context.Background(), other))
	h.reconcile(t)
	assert.Equal(t, operation.PhasePreparing, h.status(t).Phase, "the slot is free")
}

// TestPhasePreparing: the target namespace, PVC, certificates, service account, server pod and
// endpoint are made once, however often it is reconciled, and the transfer waits for the server.
func TestPhasePreparing(t *testing.T) {
	h := newHarness(t, map[string]string{"storageClassMapping": "standard=fast", "endpointType": "ClusterIP"},
		sourcePVC(keys.TransferID, "t1", keys.TransferTarget, "app2/data"), nil, storageClass("fast", true))
	h.server = func(*corev1.Pod) corev1.PodStatus { return corev1.PodStatus{Phase: corev1.PodPending} }
	st := h.run(t, 6, "")
	assert.Equal(t, operation.PhasePreparing, st.Phase)
	assert.Contains(t, st.Message, "waiting for server pod app2/ferry-server-")

	ctx := context.Background()
	pvc, err := h.target.Kube.CoreV1().PersistentVolumeClaims("app2").Get(ctx, "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "fast", *pvc.Spec.StorageClassName)
	assert.Equal(t, resource.MustParse("1Gi"), pvc.Spec.Resources.Requests[corev1.ResourceStorage])
	assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, pvc.Spec.AccessModes)
	_, err = h.target.Kube.CoreV1().Namespaces().Get(ctx, "app2", metav1.GetOptions{})
	require.NoError(t, err)
	n := namesFor("app", "data")
	srv, err := h.target.Kube.CoreV1().Secrets("app2").Get(ctx, n.server, metav1.GetOptions{})
	require.NoError(t, err)
	cli, err := h.source.Kube.CoreV1().Secrets("app").Get(ctx, n.client, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, srv.Data[dataplane.CAFile], cli.Data[dataplane.CAFile], "one CA per transfer, on both sides")
	assert.NotEqual(t, srv.Data[dataplane.KeyFile], cli.Data[dataplane.KeyFile])
	servers := transferPods(t, h.target.Kube, RoleServer)
	require.Len(t, servers, 1, "one server pod, even after several reconciles")
	sa, err := h.target.Kube.CoreV1().ServiceAccounts("app2").Get(ctx, TransferServiceAccount, metav1.GetOptions{})
	require.NoError(t, err)
	svc, err := h.target.Kube.CoreV1().Services("app2").Get(ctx, n.server, metav1.GetOptions{})
	require.NoError(t, err)
	// A backup of either cluster taken meanwhile (the final one always is) leaves these out.
	for _, obj := range []metav1.Object{srv, cli, &servers[0], sa, svc} {
		assert.Equal(t, "true", obj.GetLabels()[keys.ExcludeFromBackup], "%s", obj.GetName())
	}
	assert.NotContains(t, pvc.Labels, keys.ExcludeFromBackup, "the target PVC is the user's")
	assert.Contains(t, h.events(), "TargetPVCCreated created target PVC app2/data with storage class fast")

	// The server comes up: a stage goes straight to Transferring, through the endpoint.
	h.server = func(*corev1.Pod) corev1.PodStatus { return runningReady() }
	p := servers[0]
	p.Status = runningReady()
	_, err = h.target.Kube.CoreV1().Pods("app2").UpdateStatus(ctx, &p, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhaseTransferring, st.Phase)
	assert.Equal(t, "10.96.0.10:8443", st.Endpoint)
}

// TestBlockVolumeTarget: a block volume's target PVC is made in Block mode, and an existing
// target PVC of the other mode is refused before anything is made on the target.
func TestBlockVolumeTarget(t *testing.T) {
	ctx := context.Background()
	block := corev1.PersistentVolumeBlock
	blockPVC := func() *corev1.PersistentVolumeClaim {
		p := sourcePVC(keys.TransferID, "t1", keys.TransferTarget, "app2/data")
		p.Spec.VolumeMode = &block
		return p
	}
	h := newHarness(t, clusterIP, blockPVC(), nil, storageClass("standard", true))
	h.server = func(*corev1.Pod) corev1.PodStatus { return corev1.PodStatus{Phase: corev1.PodPending} }
	h.run(t, 4, "")
	pvc, err := h.target.Kube.CoreV1().PersistentVolumeClaims("app2").Get(ctx, "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, block, *pvc.Spec.VolumeMode)
	servers := transferPods(t, h.target.Kube, RoleServer)
	require.Len(t, servers, 1)
	assert.Equal(t, DevicePath, servers[0].Spec.Containers[0].VolumeDevices[0].DevicePath)

	fs := corev1.PersistentVolumeFilesystem
	existing := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app2", Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeMode: &fs}}
	h = newHarness(t, clusterIP, blockPVC(), nil, storageClass("standard", true), existing)
	st := h.run(t, 10, operation.PhaseFailed)
	require.NotNil(t, st)
	assert.Equal(t, operation.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "target PVC app2/data has volumeMode Filesystem, the source Block")
	assert.Empty(t, transferPods(t, h.target.Kube, RoleServer), "nothing started on the target")
}

// TestPhasePreparingTimesOut: a target that stays unreachable fails the transfer after
// prepareTimeout, counted from the phase's start (kept in the status), with the last reason.
func TestPhasePreparingTimesOut(t *testing.T) {
	h := newHarness(t, map[string]string{"prepareTimeout": "1m", "endpointType": "ClusterIP"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.target.Kube.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("the target's API server is restarting")
	})
	h.reconcile(t) // accepted
	h.reconcile(t) // admitted, then Preparing fails once
	st := h.status(t)
	assert.Equal(t, operation.PhasePreparing, st.Phase)
	assert.Contains(t, st.Message, "retrying: ")
	assert.Contains(t, st.Message, "restarting")

	h.clock.SetTime(t0.Add(59 * sidecar.Poll / 5))
	h.reconcile(t)
	assert.Equal(t, operation.PhasePreparing, h.status(t).Phase, "still inside the minute")
	h.clock.SetTime(t0.Add(2 * 60 * sidecar.Poll / 5))
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "Preparing timed out after 1m0s")
	assert.Contains(t, st.Message, "restarting")
}

// TestPhaseQuiescing: a final transfer scales down what mounts the PVC, waits for its pods to
// stop, and only then copies.
func TestPhaseQuiescing(t *testing.T) {
	web, appPod := webUsingData(3)
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1", keys.TransferType, "final"), []runtime.Object{web, appPod}, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	st := h.run(t, 6, operation.PhaseQuiescing)
	require.Equal(t, operation.PhaseQuiescing, st.Phase)
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhaseQuiescing, st.Phase)
	assert.Equal(t, []string{"Deployment/web"}, st.Quiesced)
	assert.Equal(t, "waiting for 1 pods using the PVC to stop: web-1", st.Message)
	got, err := h.source.Dynamic.Resource(deployments).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	replicas, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas")
	assert.Zero(t, replicas)
	assert.Equal(t, "3", got.GetAnnotations()[keys.PreQuiesceReplicas])
	assert.Empty(t, transferPods(t, h.source.Kube, RoleClient), "no copy while the app runs")

	// The app's pod stops: the last pass starts.
	require.NoError(t, h.source.Kube.CoreV1().Pods("app").Delete(context.Background(), "web-1", metav1.DeleteOptions{}))
	h.reconcile(t)
	assert.Equal(t, operation.PhaseTransferring, h.status(t).Phase)
	assert.Len(t, transferPods(t, h.source.Kube, RoleClient), 1)
	assert.Contains(t, h.events(), "Quiesced scaled down Deployment/web")
}

// TestFinalOfAMovedVolumeOnlyQuiesces: a final whose PV moves with the backup stops what uses
// the PVC, makes nothing on the target and copies nothing.
func TestFinalOfAMovedVolumeOnlyQuiesces(t *testing.T) {
	web, appPod := webUsingData(2)
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1", keys.TransferType, "final", keys.TransferMove, "true"), []runtime.Object{web, appPod})
	st := h.run(t, 6, operation.PhaseQuiescing)
	require.Equal(t, operation.PhaseQuiescing, st.Phase)
	h.reconcile(t)
	assert.Equal(t, "waiting for 1 pods using the PVC to stop: web-1", h.status(t).Message)

	require.NoError(t, h.source.Kube.CoreV1().Pods("app").Delete(context.Background(), "web-1", metav1.DeleteOptions{}))
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Equal(t, []string{"Deployment/web"}, st.Quiesced)
	assert.Zero(t, st.BytesSent)
	got, err := h.source.Dynamic.Resource(deployments).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	replicas, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas")
	assert.Zero(t, replicas, "a completed final leaves the source app stopped")
	assert.Contains(t, h.events(), "its volume moves with the backup")

	pvcs, err := h.target.Kube.CoreV1().PersistentVolumeClaims("app").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, pvcs.Items, "no target PVC: the restore brings the moved PV and its claim")
	assert.Empty(t, transferPods(t, h.target.Kube, RoleServer))
	assert.Empty(t, transferPods(t, h.source.Kube, RoleClient))
	secrets, err := h.target.Kube.CoreV1().Secrets("").List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, secrets.Items, "no certificates")
}

func TestNamespaceWideQuiesce(t *testing.T) {
	web, appPod := webUsingData(2)
	front := testutil.Object("apps/v1", "Deployment", "app", "front", map[string]any{"spec.replicas": int64(3)})
	elsewhere := testutil.Object("apps/v1", "Deployment", "shop", "front", map[string]any{"spec.replicas": int64(3)})
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1", keys.TransferType, "final", keys.TransferMove, "true",
		keys.TransferQuiesceScope, "namespace"), []runtime.Object{web, front, elsewhere, appPod})
	st := h.run(t, 6, operation.PhaseQuiescing)
	require.Equal(t, operation.PhaseQuiescing, st.Phase)
	assert.Contains(t, h.events(), "quiescing every workload in namespace app before its volume moves")
	require.NoError(t, h.source.Kube.CoreV1().Pods("app").Delete(context.Background(), "web-1", metav1.DeleteOptions{}))
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Equal(t, []string{"Deployment/front", "Deployment/web"}, st.Quiesced, "the front-end that mounts no volume stops too")
	replicas := func(ns, name string) int64 {
		got, err := h.source.Dynamic.Resource(deployments).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		require.NoError(t, err)
		n, _, _ := unstructured.NestedInt64(got.Object, "spec", "replicas")
		return n
	}
	assert.Zero(t, replicas("app", "front"))
	assert.Zero(t, replicas("app", "web"))
	assert.Equal(t, int64(3), replicas("shop", "front"), "only the PVC's namespace")
}

// webUsingData is Deployment app/web with replicas whose pods mount PVC data, and its one
// running pod, web-1.
func webUsingData(replicas int64) (*unstructured.Unstructured, *corev1.Pod) {
	yes := true
	web := testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": replicas,
		"spec.template.spec.volumes": []any{map[string]any{"name": "v", "persistentVolumeClaim": map[string]any{"claimName": "data"}}}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-1", OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-x", Controller: &yes}}},
		Spec:   corev1.PodSpec{NodeName: "n1", Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	return web, pod
}

var deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

func TestPhaseQuiescingRefusesBarePodsAndTimesOut(t *testing.T) {
	bare := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "debug"},
		Spec:   corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1", keys.TransferType, "final"), []runtime.Object{bare}, storageClass("standard", true))
	st := h.run(t, 6, operation.PhaseFailed)
	assert.Equal(t, operation.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "pod app/debug mounts PVC data and has no controller to scale down")

	yes := true
	stuck := bare.DeepCopy()
	stuck.Name, stuck.OwnerReferences = "stuck", []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "x", Controller: &yes}}
	h = newHarness(t, map[string]string{"quiesceTimeout": "1m", "endpointType": "ClusterIP"}, sourcePVC(keys.TransferID, "t1", keys.TransferType, "final"), []runtime.Object{stuck}, storageClass("standard", true))
	st = h.run(t, 30, operation.PhaseFailed)
	assert.Equal(t, operation.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "Quiescing timed out after 1m0s")
	assert.Contains(t, st.Message, "stuck")
}

// TestPhaseTransferring: client pods run until one succeeds; progress reaches the status; a
// failed pod is followed by another, up to three; the end cleans up both clusters.
func TestPhaseTransferring(t *testing.T) {
	failed := func(msg string) clientRun {
		return clientRun{phase: corev1.PodFailed, reports: []dataplane.Report{{Type: dataplane.ReportError, Attempt: 8, Error: msg, ExitCode: 12}}}
	}
	tests := []struct {
		name     string
		runs     []clientRun
		phase    operation.Phase
		message  string
		attempts int
		events   []string
	}{
		{name: "first pod succeeds", runs: []clientRun{succeeded()}, phase: operation.PhaseCompleted, attempts: 1,
			events: []string{"TransferStarted", "TransferCompleted stage transfer t1 to app/data completed: 3 files, 100 bytes sent of 100"}},
		{name: "second pod succeeds", runs: []clientRun{failed("connection reset by peer"), succeeded()}, phase: operation.PhaseCompleted, attempts: 8,
			events: []string{"TransferAttemptFailed attempt 1 failed: connection reset by peer"}},
		{name: "three pods fail", runs: []clientRun{failed("a"), failed("b"), failed("refused")}, phase: operation.PhaseFailed, attempts: 10,
			message: "3 attempts failed; the last: refused", events: []string{"TransferFailed"}},
		{name: "a pod killed without a report", runs: []clientRun{{phase: corev1.PodFailed, message: "OOMKilled"}, succeeded()}, phase: operation.PhaseCompleted, attempts: 2,
			events: []string{"TransferAttemptFailed attempt 1 failed: Failed: exit code 12 OOMKilled"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
			h.client = func(attempt int) clientRun { return tc.runs[attempt-1] }
			st := h.run(t, 20, operation.PhaseFailed)
			require.True(t, st.Phase.Terminal(), "ended: %+v", st)
			assert.Equal(t, tc.phase, st.Phase)
			assert.Equal(t, tc.message, st.Message)
			assert.Equal(t, tc.attempts, st.Attempts, "send attempts over all client pods (at least)")
			assert.NotNil(t, st.Completed)
			if tc.phase == operation.PhaseCompleted {
				assert.Equal(t, float64(100), st.Percent)
				assert.Equal(t, int64(100), st.BytesSent)
				assert.Equal(t, int64(3), st.FilesSent)
			}
			events := h.events()
			for _, e := range tc.events {
				assert.Contains(t, events, e)
			}
			assert.Len(t, h.pods.created, len(tc.runs)+1, "one server pod and a client pod per attempt")
			assertCleanedUp(t, h)
		})
	}
}

// TestPhaseTransferringReportsProgress: a running client's latest report is the status.
func TestPhaseTransferringReportsProgress(t *testing.T) {
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun {
		return clientRun{phase: corev1.PodRunning, reports: []dataplane.Report{
			{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 10, BytesTotal: 100, Percent: 10},
			{Type: dataplane.ReportRetry, Attempt: 1, Error: "connection reset by peer", BackoffSeconds: 2},
			{Type: dataplane.ReportProgress, Attempt: 2, BytesDone: 40, BytesTotal: 100, Percent: 40, RateBytesPerSecond: 1 << 20, FilesTotal: 7},
		}}
	}
	st := h.run(t, 6, operation.PhaseTransferring)
	require.Equal(t, operation.PhaseTransferring, st.Phase)
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, int64(40), st.BytesDone)
	assert.Equal(t, float64(40), st.Percent)
	assert.Equal(t, int64(1<<20), st.RateBPS)
	assert.Equal(t, int64(7), st.Files)
	assert.Equal(t, 2, st.Attempts)
	assert.Empty(t, st.Message)
}

// TestVerifiedTransfer: a request with ferry.dev/transfer-verify gives the client --verify; the
// verify pass's result reaches the status and an Event. Differences that survive send's copy by
// content fail the transfer at once (another pod would copy the same), naming the paths; while
// the pass runs, its progress keeps the client from counting as stalled.
func TestVerifiedTransfer(t *testing.T) {
	verifiedPVC := func() *corev1.PersistentVolumeClaim {
		return sourcePVC(keys.TransferID, "t1", keys.TransferType, "final", keys.TransferVerify, "true")
	}
	t.Run("no difference", func(t *testing.T) {
		h := newHarness(t, clusterIP, verifiedPVC(), nil, storageClass("standard", true))
		h.client = func(int) clientRun {
			return clientRun{phase: corev1.PodSucceeded, reports: []dataplane.Report{
				{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 100, BytesTotal: 100, Percent: 100, VerifyPercent: 40, FilesTotal: 1204},
				{Type: dataplane.ReportDone, BytesTotal: 3328599654, BytesSent: 100, Files: 1204, FilesTransferred: 3, Attempts: 2,
					Verified: &dataplane.Verification{Files: 1204, Bytes: 3328599654, Repaired: 1}},
			}}
		}
		st := h.run(t, 20, operation.PhaseCompleted)
		require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
		assert.Equal(t, &operation.TransferVerification{Files: 1204, Bytes: 3328599654, Repaired: 1}, st.Verified)
		assert.Zero(t, st.Verifying)
		events := h.events()
		assert.Contains(t, events, "Normal TransferVerified verified: 1204 files compared by content, 3.1 GiB read on each side, no difference "+
			"(after 1 difference(s) that size and mtime did not show, copied again by content)")
		client := transferPods(t, h.source.Kube, RoleClient)
		require.Empty(t, client, "cleaned up")
	})
	t.Run("differences fail the transfer", func(t *testing.T) {
		h := newHarness(t, clusterIP, verifiedPVC(), nil, storageClass("standard", true))
		v := &dataplane.Verification{Files: 42, Bytes: 2686976, Mismatches: 7}
		for i := range 7 {
			v.First = append(v.First, dataplane.Mismatch{Path: fmt.Sprintf("d%d/f", i), Diff: "content"})
		}
		msg := "verification failed: 7 difference(s) between source and target (42 files, 2686976 bytes compared): d0/f (content), …"
		h.client = func(int) clientRun {
			return clientRun{phase: corev1.PodFailed, exit: dataplane.ExitVerifyFailed, reports: []dataplane.Report{
				{Type: dataplane.ReportRetry, Attempt: 1, Error: "verification failed: …; the next attempt copies by content", Verified: v},
				{Type: dataplane.ReportError, Attempt: 2, Error: msg, ExitCode: dataplane.ExitVerifyFailed, Verified: v},
			}}
		}
		h.run(t, 6, operation.PhaseTransferring)
		cmd := transferPods(t, h.source.Kube, RoleClient)[0].Spec.Containers[0].Command
		assert.Contains(t, cmd, "--verify=true")
		st := h.run(t, 20, operation.PhaseFailed)
		require.Equal(t, operation.PhaseFailed, st.Phase)
		assert.Equal(t, msg, st.Message)
		assert.Equal(t, &operation.TransferVerification{Files: 42, Bytes: 2686976, Mismatches: 7,
			First: []string{"d0/f", "d1/f", "d2/f", "d3/f", "d4/f"}}, st.Verified, "five paths at most in the annotation")
		assert.Equal(t, 2, st.Attempts)
		events := h.events()
		assert.Contains(t, events, "Warning TransferVerifyFailed the target differs from the source in 7 place(s) of 42 files compared: "+
			"d0/f (content), d1/f (content), d2/f (content), d3/f (content), d4/f (content) and 2 more")
		assert.NotContains(t, events, "TransferAttemptFailed", "no other client pod")
		assert.Len(t, h.pods.created, 2, "one server pod and one client pod")
	})
	t.Run("verifying is progress", func(t *testing.T) {
		h := newHarness(t, map[string]string{"endpointType": "ClusterIP", "stallTimeout": "1m"}, verifiedPVC(), nil, storageClass("standard", true))
		h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
		h.run(t, 8, operation.PhaseTransferring)
		client := transferPods(t, h.source.Kube, RoleClient)[0]
		for i := range 30 { // 2.5 minutes of polls, the copy done, the verify pass moving
			h.pods.setReports(client.Name, []dataplane.Report{{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 1000, BytesTotal: 1000,
				Percent: 100, VerifyPercent: float64(i+1) / 10}})
			h.reconcile(t)
			h.clock.SetTime(h.clock.Now().Add(sidecar.Poll))
		}
		st := h.status(t)
		assert.Equal(t, operation.PhaseTransferring, st.Phase)
		assert.Equal(t, 3.0, st.Verifying)
		assert.NotContains(t, h.events(), "TransferStalled")
	})
}

// TestServerPodEndedIsReplaced: a server pod that ends before the client finished is replaced.
func TestServerPodEndedIsReplaced(t *testing.T) {
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	h.run(t, 6, operation.PhaseTransferring)
	srv := transferPods(t, h.target.Kube, RoleServer)[0]
	srv.Status = corev1.PodStatus{Phase: corev1.PodFailed}
	_, err := h.target.Kube.CoreV1().Pods(srv.Namespace).UpdateStatus(context.Background(), &srv, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.reconcile(t)
	servers := transferPods(t, h.target.Kube, RoleServer)
	require.Len(t, servers, 1)
	assert.NotEqual(t, srv.Name, servers[0].Name)
	assert.Contains(t, h.events(), "ServerPodEnded")
}

// TestStageOfAMountedRWOVolume: the client runs next to the app (a ReadWriteOnce volume is
// attached to its node); a ReadWriteOncePod volume in use cannot be read until a final.
func TestStageOfAMountedRWOVolume(t *testing.T) {
	yes := true
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-1", OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "web-x", Controller: &yes}}},
		Spec:   corev1.PodSpec{NodeName: "n1", Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), []runtime.Object{app}, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	h.run(t, 6, operation.PhaseTransferring)
	clients := transferPods(t, h.source.Kube, RoleClient)
	require.Len(t, clients, 1)
	terms := clients[0].Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	assert.Equal(t, "n1", terms[0].MatchFields[0].Values[0])

	rwop := sourcePVC(keys.TransferID, "t1")
	rwop.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}
	h = newHarness(t, clusterIP, rwop, []runtime.Object{app}, storageClass("standard", true))
	st := h.run(t, 6, operation.PhaseFailed)
	assert.Equal(t, operation.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "the PVC is ReadWriteOncePod and pod web-1 uses it")
}

// TestCancelAndReplace: a cancel ends the transfer and cleans up; a newer request takes over;
// removing the request tidies up.
func TestCancelAndReplace(t *testing.T) {
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1", keys.TransferTarget, "app2/data"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	h.run(t, 6, operation.PhaseTransferring)
	require.NotEmpty(t, transferPods(t, h.target.Kube, RoleServer))

	h.annotate(t, keys.TransferCancel, "t1")
	h.reconcile(t)
	st := h.status(t)
	assert.Equal(t, operation.PhaseCancelled, st.Phase)
	assert.Equal(t, "cancelled on request", st.Message)
	assertCleanedUp(t, h)
	_, err := h.target.Kube.CoreV1().PersistentVolumeClaims("app2").Get(context.Background(), "data", metav1.GetOptions{})
	assert.NoError(t, err, "the target PVC is never deleted")

	h.annotate(t, keys.TransferID, "t2")
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, "t2", st.ID, "a new request starts over")
	assert.Equal(t, operation.PhasePending, st.Phase)

	h.run(t, 6, operation.PhaseTransferring)
	h.annotate(t, keys.TransferID, "", keys.TransferCancel, "")
	h.reconcile(t)
	assertCleanedUp(t, h)
}

func assertCleanedUp(t *testing.T, h *harness) {
	t.Helper()
	ctx := context.Background()
	for name, c := range map[string]*testutil.Cluster{"source": h.source, "target": h.target} {
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: keys.ManagedByLabel + "=" + keys.ManagedByValue})
		require.NoError(t, err)
		assert.Empty(t, pods.Items, "%s: transfer pods deleted", name)
		secrets, err := c.Kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{LabelSelector: keys.ManagedByLabel + "=" + keys.ManagedByValue})
		require.NoError(t, err)
		assert.Empty(t, secrets.Items, "%s: certificate Secrets deleted", name)
		svcs, err := c.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Empty(t, svcs.Items, "%s: endpoint deleted", name)
		sas, err := c.Kube.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.Empty(t, sas.Items, "%s: transfer service account deleted", name)
	}
}

func TestAdmissionBoundsConcurrency(t *testing.T) {
	a := newAdmission()
	running := map[string]bool{"a/1": true}
	active := func() (map[string]bool, error) {
		out := map[string]bool{}
		for k, v := range running {
			out[k] = v
		}
		return out, nil
	}
	ok, n, err := a.admit("a/2", 2, active)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, 2, n)
	ok, n, _ = a.admit("a/3", 2, active)
	assert.False(t, ok, "a/2 holds a slot before the cache shows it")
	assert.Equal(t, 2, n)
	ok, _, _ = a.admit("a/1", 2, active)
	assert.True(t, ok, "a running transfer keeps its slot")
	a.release("a/2")
	ok, _, _ = a.admit("a/3", 2, active)
	assert.True(t, ok)
}

// TestNewerRequestReplacesAnOlder: a newer request takes over a PVC whose transfer is under way:
// the older one's pods, Secrets and endpoint go before the newer server starts (one server pod,
// selected by transfer ID), and a final's quiesced app comes back; a stage does not replace a
// final: it is refused, and the final's app comes back too (its request is gone).
func TestNewerRequestReplacesAnOlder(t *testing.T) {
	web := func() runtime.Object {
		return testutil.Object("apps/v1", "Deployment", "app", "web", map[string]any{"spec.replicas": int64(2),
			"spec.template.spec.volumes": []any{map[string]any{"name": "v", "persistentVolumeClaim": map[string]any{"claimName": "data"}}}})
	}
	replicas := func(t *testing.T, h *harness) int64 {
		d, err := h.source.Dynamic.Resource(deployments).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
		require.NoError(t, err)
		n, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
		return n
	}
	for _, tc := range []struct {
		name           string
		first, second  operation.TransferType
		wantPhase      operation.Phase
		wantServerPods int
	}{
		{name: "stage replaces stage", first: operation.Stage, second: operation.Stage, wantPhase: operation.PhaseTransferring, wantServerPods: 1},
		{name: "final replaces final", first: operation.Final, second: operation.Final, wantPhase: operation.PhaseTransferring, wantServerPods: 1},
		{name: "a stage does not replace a final", first: operation.Final, second: operation.Stage, wantPhase: operation.PhaseRefused, wantServerPods: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1", keys.TransferType, string(tc.first)), []runtime.Object{web()}, storageClass("standard", true))
			h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
			st := h.run(t, 8, operation.PhaseTransferring)
			require.Equal(t, operation.PhaseTransferring, st.Phase, st.Message)
			first := transferPods(t, h.target.Kube, RoleServer)
			require.Len(t, first, 1)
			if tc.first == operation.Final {
				require.Zero(t, replicas(t, h), "the final quiesced the app")
			}

			h.annotate(t, keys.TransferID, "t2", keys.TransferType, string(tc.second))
			st = h.run(t, 8, operation.PhaseTransferring)
			assert.Equal(t, "t2", st.ID)
			assert.Equal(t, tc.wantPhase, st.Phase, st.Message)
			events := h.events()
			assert.Contains(t, events, "TransferReplaced transfer t1 was replaced by t2 before it finished")
			servers := transferPods(t, h.target.Kube, RoleServer)
			require.Len(t, servers, tc.wantServerPods, "the older server is gone before a newer one starts")
			for _, s := range servers {
				assert.NotEqual(t, first[0].Name, s.Name)
				assert.Equal(t, "t2", s.Labels[keys.TransferIDLabel])
			}
			if tc.second == operation.Stage || tc.first == operation.Stage {
				assert.Equal(t, int64(2), replicas(t, h), "the app is up: a replaced final brought it back, a stage never took it down")
			}
			if tc.wantPhase == operation.PhaseRefused {
				assert.Contains(t, st.Message, "a final transfer (t1) of this PVC was under way: a stage does not replace it")
				assert.Contains(t, events, "brought back Deployment app/web unquiesced")
				return
			}
			svc, err := h.target.Kube.CoreV1().Services("app").Get(context.Background(), namesFor("app", "data").server, metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, "t2", svc.Spec.Selector[keys.TransferIDLabel], "the endpoint selects this transfer's server only")
		})
	}
}

// TestAFinalThatDoesNotCompleteBringsTheAppBack: whatever ends a final pass early — its
// attempts failing, a cancel (Velero's Cancel(), also on its item-operation timeout), its Backup
// deleted — the workloads it quiesced come back, with a Warning Event and a word in the status;
// unless ferry-config keepQuiescedOnFailure says to leave them down.
func TestAFinalThatDoesNotCompleteBringsTheAppBack(t *testing.T) {
	web, _ := webUsingData(3)
	failed := clientRun{phase: corev1.PodFailed, reports: []dataplane.Report{{Type: dataplane.ReportError, Attempt: 1, Error: "connection refused"}}}
	for _, tc := range []struct {
		name    string
		config  map[string]string
		end     func(t *testing.T, h *harness) // what ends the final
		phase   operation.Phase
		keepApp bool
	}{
		{name: "its attempts fail", end: func(t *testing.T, h *harness) { h.client = func(int) clientRun { return failed } }, phase: operation.PhaseFailed},
		{name: "cancelled", end: func(t *testing.T, h *harness) { h.tamper(t, keys.TransferCancel, "t1") }, phase: operation.PhaseCancelled},
		{name: "its Backup deleted", end: func(t *testing.T, h *harness) {
			require.NoError(t, h.source.Dynamic.Resource(backupsGVR).Namespace("velero").Delete(context.Background(), "final-1", metav1.DeleteOptions{}))
		}, phase: operation.PhaseCancelled},
		{name: "velero backup delete asked", end: func(t *testing.T, h *harness) {
			dbr := testutil.Object("velero.io/v1", "DeleteBackupRequest", "velero", "final-1-x", map[string]any{"spec.backupName": "final-1"})
			_, err := h.source.Dynamic.Resource(dbrGVR).Namespace("velero").Create(context.Background(), dbr, metav1.CreateOptions{})
			require.NoError(t, err)
		}, phase: operation.PhaseCancelled},
		{name: "failed, and the admin keeps apps down", config: map[string]string{"keepQuiescedOnFailure": "true"},
			end: func(t *testing.T, h *harness) { h.client = func(int) clientRun { return failed } }, phase: operation.PhaseFailed, keepApp: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]string{"endpointType": "ClusterIP"}
			for k, v := range tc.config {
				cfg[k] = v
			}
			backup := testutil.Object("velero.io/v1", "Backup", "velero", "final-1", nil)
			backup.SetUID("t1")
			h := newHarness(t, cfg, sourcePVC(keys.TransferID, "t1", keys.TransferType, "final", keys.TransferBackup, "final-1"),
				[]runtime.Object{web.DeepCopy(), backup}, storageClass("standard", true))
			h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
			st := h.run(t, 8, operation.PhaseTransferring)
			require.Equal(t, operation.PhaseTransferring, st.Phase, st.Message)
			require.Equal(t, []string{"Deployment/web"}, st.Quiesced)
			assert.Zero(t, replicasOf(t, h, "web"))

			tc.end(t, h)
			// A failing pod ends only after the fake kubelet ran it: let the old pods fail too.
			if tc.phase == operation.PhaseFailed {
				for _, p := range transferPods(t, h.source.Kube, RoleClient) {
					p.Status = corev1.PodStatus{Phase: corev1.PodFailed}
					_, err := h.source.Kube.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), &p, metav1.UpdateOptions{})
					require.NoError(t, err)
					h.pods.setReports(p.Name, failed.reports)
				}
			}
			st = h.run(t, 10, tc.phase)
			require.Equal(t, tc.phase, st.Phase, st.Message)
			events := h.events()
			if tc.keepApp {
				assert.Zero(t, replicasOf(t, h, "web"), "kept down, as ferry-config asks")
				assert.Contains(t, st.Message, "left quiesced: Deployment/web")
				assert.Contains(t, events, "AppLeftQuiesced")
				return
			}
			assert.Equal(t, int64(3), replicasOf(t, h, "web"), "the app is back at its replicas")
			assert.Contains(t, st.Message, "brought back Deployment app/web unquiesced")
			assert.Contains(t, events, "AppRestarted")
			assertCleanedUp(t, h)
		})
	}
}

var (
	backupsGVR = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}
	dbrGVR     = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "deletebackuprequests"}
)

func replicasOf(t *testing.T, h *harness, name string) int64 {
	t.Helper()
	d, err := h.source.Dynamic.Resource(deployments).Namespace("app").Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	n, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
	return n
}

// TestStalledAndStuckClients: a client that makes no progress for stallTimeout is stopped and
// another starts (three in all, then the transfer fails saying why); one that cannot start
// within prepareTimeout fails the transfer with the scheduler's reason.
func TestStalledAndStuckClients(t *testing.T) {
	t.Run("stalled", func(t *testing.T) {
		h := newHarness(t, map[string]string{"endpointType": "ClusterIP", "stallTimeout": "1m"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
		frozen := clientRun{phase: corev1.PodRunning, reports: []dataplane.Report{{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 10, BytesTotal: 100, Percent: 10}}}
		h.client = func(int) clientRun { return frozen }
		st := h.run(t, 80, operation.PhaseFailed)
		require.Equal(t, operation.PhaseFailed, st.Phase)
		assert.Equal(t, "3 attempts failed; the last: no progress for 1m5s (stallTimeout 1m0s)", st.Message)
		events := h.events()
		assert.Equal(t, 3, strings.Count(events, "TransferStalled"))
		assert.Contains(t, events, "TransferAttemptFailed attempt 1 failed: no progress for 1m5s (stallTimeout 1m0s)")
	})
	t.Run("moving slowly is not a stall", func(t *testing.T) {
		h := newHarness(t, map[string]string{"endpointType": "ClusterIP", "stallTimeout": "1m"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
		done := int64(0)
		h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
		h.run(t, 8, operation.PhaseTransferring)
		client := transferPods(t, h.source.Kube, RoleClient)[0]
		for range 30 { // 2.5 minutes of polls, a byte more each
			done++
			h.pods.setReports(client.Name, []dataplane.Report{{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: done, BytesTotal: 1000, Percent: float64(done) / 10}})
			h.reconcile(t)
			h.clock.SetTime(h.clock.Now().Add(sidecar.Poll))
		}
		st := h.status(t)
		assert.Equal(t, operation.PhaseTransferring, st.Phase)
		assert.Equal(t, 1, st.Attempts)
		assert.NotContains(t, h.events(), "TransferStalled")
	})
	t.Run("cannot be scheduled", func(t *testing.T) {
		h := newHarness(t, map[string]string{"endpointType": "ClusterIP", "prepareTimeout": "2m"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
		h.client = func(int) clientRun { return clientRun{phase: corev1.PodPending} }
		h.run(t, 8, operation.PhaseTransferring)
		client := transferPods(t, h.source.Kube, RoleClient)[0]
		client.CreationTimestamp = metav1.NewTime(h.clock.Now())
		client.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
			Message: "0/1 nodes are available: 1 node(s) were unschedulable"}}
		_, err := h.source.Kube.CoreV1().Pods(client.Namespace).UpdateStatus(context.Background(), &client, metav1.UpdateOptions{})
		require.NoError(t, err)
		st := h.run(t, 40, operation.PhaseFailed)
		require.Equal(t, operation.PhaseFailed, st.Phase)
		assert.Contains(t, st.Message, "client pod "+client.Name+" did not start within 2m0s (prepareTimeout): Pending: 0/1 nodes are available: 1 node(s) were unschedulable")
	})
}

// TestCertificatesOutliveTheTransfer: a retry starting when the transfer's certificates are
// about to expire gets a new CA and certificates on both sides, and a server that loaded them.
func TestCertificatesOutliveTheTransfer(t *testing.T) {
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	h.run(t, 8, operation.PhaseTransferring)
	n := namesFor("app", "data")
	oldCA := string(secretData(t, h.source, "app", n.client)[dataplane.CAFile])
	oldServer := transferPods(t, h.target.Kube, RoleServer)[0].Name

	// Six and a half days on, the running attempt fails: the next one must not use certificates
	// that expire within the day.
	h.clock.SetTime(time.Now().Add(dataplane.DefaultCertValidity - 12*time.Hour)) // the certificates were made now
	client := transferPods(t, h.source.Kube, RoleClient)[0]
	client.Status = corev1.PodStatus{Phase: corev1.PodFailed}
	_, err := h.source.Kube.CoreV1().Pods("app").UpdateStatus(context.Background(), &client, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.reconcile(t)
	h.settle(t)
	h.reconcile(t)
	newCA := string(secretData(t, h.source, "app", n.client)[dataplane.CAFile])
	assert.NotEqual(t, oldCA, newCA, "a new CA for the next attempt")
	assert.Equal(t, newCA, string(secretData(t, h.target, "app", n.server)[dataplane.CAFile]), "the server has the same new CA")
	servers := transferPods(t, h.target.Kube, RoleServer)
	require.Len(t, servers, 1)
	assert.NotEqual(t, oldServer, servers[0].Name, "the server restarted with the new certificates")
	assert.Contains(t, h.events(), "CertificatesRenewed")
	assert.Len(t, transferPods(t, h.source.Kube, RoleClient), 2, "attempt 2 runs")
}

func secretData(t *testing.T, c *testutil.Cluster, ns, name string) map[string][]byte {
	t.Helper()
	s, err := c.Kube.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
	require.NoError(t, err)
	return s.Data
}

// TestMetricsFollowATransfer: the per-PVC series show the phase and progress while a transfer
// runs, and go when it ends; its success stays, for stale-stage alerts; label values are
// lower-case.
func TestMetricsFollowATransfer(t *testing.T) {
	pvc := sourcePVC(keys.TransferID, "t1")
	pvc.Namespace = "metrics"
	h := newHarness(t, clusterIP, pvc, []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "metrics"}}}, storageClass("standard", true))
	running := clientRun{phase: corev1.PodRunning, reports: []dataplane.Report{{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 40, BytesTotal: 100, Percent: 40}}}
	h.client = func(int) clientRun { return running }
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "metrics", Name: "data"}}
	for range 8 {
		_, err := h.Reconcile(context.Background(), req)
		require.NoError(t, err)
		h.settle(t)
		h.clock.SetTime(h.clock.Now().Add(sidecar.Poll))
	}
	assert.Equal(t, float64(1), promtest.ToFloat64(transferPhase.WithLabelValues("metrics", "data", "stage", "transferring")))
	assert.Equal(t, float64(40), promtest.ToFloat64(transferProgressBytes.WithLabelValues("metrics", "data")))
	assert.Equal(t, float64(100), promtest.ToFloat64(transferSizeBytes.WithLabelValues("metrics", "data")))

	for _, p := range transferPods(t, h.source.Kube, RoleClient) {
		p.Status = corev1.PodStatus{Phase: corev1.PodSucceeded}
		_, err := h.source.Kube.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), &p, metav1.UpdateOptions{})
		require.NoError(t, err)
		h.pods.setReports(p.Name, succeeded().reports)
	}
	h.settle(t) // the server ends after its client
	_, err := h.Reconcile(context.Background(), req)
	require.NoError(t, err)
	var pvcNow corev1.PersistentVolumeClaim
	require.NoError(t, h.pvcs.Get(context.Background(), req.NamespacedName, &pvcNow))
	st, err := operation.ParseTransferStatus(pvcNow.Annotations)
	require.NoError(t, err)
	require.Equal(t, operation.PhaseCompleted, st.Phase)
	assert.Equal(t, float64(st.Completed.Unix()), promtest.ToFloat64(transferLastSuccess.WithLabelValues("metrics", "data", "stage")))
	for _, c := range []prometheus.Collector{transferPhase, transferPhaseSince, transferProgressBytes, transferSizeBytes} {
		assert.Zero(t, seriesIn(t, c, "metrics"), "no series for an ended transfer")
	}
}

// seriesIn counts a collector's series whose namespace label is ns.
func seriesIn(t *testing.T, c prometheus.Collector, ns string) int {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	n := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "namespace" && l.GetValue() == ns {
					n++
				}
			}
		}
	}
	return n
}

// TestLastSuccessOutlivesItsRequest: the status keeps the last completed transfer's summary
// through the next request, whether that one runs, fails or is refused.
func TestLastSuccessOutlivesItsRequest(t *testing.T) {
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return succeeded() }
	st := h.run(t, 20, operation.PhaseCompleted)
	require.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	require.NotNil(t, st.Last)
	want := operation.LastTransfer{ID: "t1", Type: operation.Stage, Target: "app/data", Completed: st.Completed, BytesSent: 100, BytesTotal: 100, FilesSent: 3}
	assert.Equal(t, want, *st.Last)

	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	h.annotate(t, keys.TransferID, "t2")
	st = h.run(t, 8, operation.PhaseTransferring)
	require.Equal(t, "t2", st.ID)
	require.NotNil(t, st.Last, "a running transfer still says when the last one succeeded")
	assert.Equal(t, want, *st.Last)

	h.tamper(t, keys.TransferID, "t3")
	st = h.run(t, 4, operation.PhaseRefused)
	require.Equal(t, operation.PhaseRefused, st.Phase)
	require.NotNil(t, st.Last, "a refused request does not erase it")
	assert.Equal(t, want, *st.Last)
}

// TestCompletedOnlyOnceTheServerEnded: a client's success completes the transfer only when the
// server has ended well after it (a server that is not root restores the exact symlink targets
// and flushes the target then); otherwise that attempt failed and another pass runs.
func TestCompletedOnlyOnceTheServerEnded(t *testing.T) {
	succeeded := &corev1.PodStatus{Phase: corev1.PodSucceeded}
	failed := &corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: ServeContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}}
	for _, tc := range []struct {
		name    string
		ends    []*corev1.PodStatus // how the n-th server pod ends after its client; nil: it keeps running
		phase   operation.Phase
		message string
		events  []string
	}{
		{name: "server exits 0 after its client", ends: []*corev1.PodStatus{succeeded}, phase: operation.PhaseCompleted},
		{name: "server fails after its client: the pass runs again", ends: []*corev1.PodStatus{failed, succeeded}, phase: operation.PhaseCompleted,
			events: []string{"TransferAttemptFailed attempt 1 failed: server pod ferry-server-", "failed after the client finished: Failed"}},
		{name: "servers never end", ends: []*corev1.PodStatus{nil, nil, nil}, phase: operation.PhaseFailed,
			message: "3 attempts failed; the last: server pod ferry-server-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]string{"endpointType": "ClusterIP", "stallTimeout": "20s"}
			h := newHarness(t, cfg, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
			ended := map[string]*corev1.PodStatus{}
			h.serverEnd = func(p *corev1.Pod) *corev1.PodStatus {
				if st, ok := ended[p.Name]; ok {
					return st
				}
				st := tc.ends[min(len(ended), len(tc.ends)-1)]
				ended[p.Name] = st
				return st
			}
			st := h.run(t, 60, operation.PhaseFailed)
			require.True(t, st.Phase.Terminal(), "ended: %+v", st)
			assert.Equal(t, tc.phase, st.Phase, st.Message)
			assert.Contains(t, st.Message, tc.message)
			events := h.events()
			for _, e := range tc.events {
				assert.Contains(t, events, e)
			}
			assertCleanedUp(t, h)
		})
	}
}

// TestServerThatEndsBeforeItsClientIsKept: the server exits 0 on its client's completion report,
// and its kubelet may say so before the client's says the client succeeded. That server is not
// "ended too early": no other server starts, and the transfer completes.
func TestServerThatEndsBeforeItsClientIsKept(t *testing.T) {
	h := newHarness(t, clusterIP, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	st := h.run(t, 8, operation.PhaseTransferring)
	require.Equal(t, operation.PhaseTransferring, st.Phase, st.Message)
	ctx := context.Background()
	setStatus := func(c kubernetes.Interface, role string, st corev1.PodStatus) {
		pods := transferPods(t, c, role)
		require.Len(t, pods, 1)
		p := pods[0]
		p.Status = st
		_, err := c.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, &p, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	exited := metav1.NewTime(h.clock.Now())
	setStatus(h.target.Kube, RoleServer, corev1.PodStatus{Phase: corev1.PodSucceeded, ContainerStatuses: []corev1.ContainerStatus{{Name: ServeContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: exited}}}}})
	h.reconcile(t)
	assert.Len(t, transferPods(t, h.target.Kube, RoleServer), 1, "the server that had the report stays; none replaces it")
	assert.NotContains(t, h.events(), "ServerPodEnded")

	setStatus(h.source.Kube, RoleClient, corev1.PodStatus{Phase: corev1.PodSucceeded})
	h.pods.setReports(transferPods(t, h.source.Kube, RoleClient)[0].Name, succeeded().reports)
	h.reconcile(t)
	st = h.status(t)
	assert.Equal(t, operation.PhaseCompleted, st.Phase, st.Message)
	assert.Len(t, h.pods.created, 2, "one server and one client pod in all")
}

// TestRetryFollowsAMovedEndpoint: a retry's client connects to where the endpoint is now (a
// LoadBalancer that got another address with its new server), not where the first one was.
func TestRetryFollowsAMovedEndpoint(t *testing.T) {
	h := newHarness(t, map[string]string{"endpointType": "LoadBalancer"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(attempt int) clientRun {
		if attempt == 1 {
			return clientRun{phase: corev1.PodFailed, reports: []dataplane.Report{{Type: dataplane.ReportError, Attempt: 8, Error: "connection refused", ExitCode: 12}}}
		}
		return clientRun{phase: corev1.PodRunning}
	}
	st := h.run(t, 3, operation.PhaseTransferring)
	require.Equal(t, "192.0.2.10:8443", st.Endpoint)
	h.moveEndpoint(t, "192.0.2.77")

	h.run(t, 6, operation.PhaseFailed)
	clients := transferPods(t, h.source.Kube, RoleClient)
	require.Len(t, clients, 2)
	var second corev1.Pod
	for _, p := range clients {
		if p.Labels[keys.TransferAttempt] == "2" {
			second = p
		}
	}
	assert.Contains(t, second.Spec.Containers[0].Command, "--to=192.0.2.77:8443")
	assert.Equal(t, "192.0.2.77:8443", h.status(t).Endpoint)
}

// moveEndpoint gives the transfer's one LoadBalancer Service another address, as a replaced
// server behind it would ("": none yet).
func (h *harness) moveEndpoint(t *testing.T, ip string) {
	t.Helper()
	ctx := context.Background()
	svcs, err := h.target.Kube.CoreV1().Services("app").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, svcs.Items, 1)
	svc := svcs.Items[0]
	svc.Status.LoadBalancer.Ingress = nil
	if ip != "" {
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	}
	_, err = h.target.Kube.CoreV1().Services("app").Update(ctx, &svc, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// TestRunningClientFollowsAMovedEndpoint: when the endpoint moves while a client runs (its
// server replaced, on an address that was the old pod's), that client is stopped and the next
// one connects to the new address.
func TestRunningClientFollowsAMovedEndpoint(t *testing.T) {
	h := newHarness(t, map[string]string{"endpointType": "LoadBalancer"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	st := h.run(t, 3, operation.PhaseTransferring)
	require.Equal(t, "192.0.2.10:8443", st.Endpoint)
	first := transferPods(t, h.source.Kube, RoleClient)
	require.Len(t, first, 1)
	h.moveEndpoint(t, "192.0.2.77")

	h.run(t, 2, operation.PhaseFailed)
	clients := transferPods(t, h.source.Kube, RoleClient)
	require.Len(t, clients, 1, "the first client is gone")
	assert.NotEqual(t, first[0].Name, clients[0].Name)
	assert.Equal(t, "2", clients[0].Labels[keys.TransferAttempt])
	assert.Contains(t, clients[0].Spec.Containers[0].Command, "--to=192.0.2.77:8443")
	assert.Contains(t, h.events(), "attempt 1 failed: the endpoint moved from 192.0.2.10:8443 to 192.0.2.77:8443")
}

// TestNextClientWaitsForAReplacedServer: when the server pod ends and the client fails with it,
// the next client starts only once the new server is ready and the endpoint has its new
// address; started sooner, it would spend an attempt on connections that cannot work.
func TestNextClientWaitsForAReplacedServer(t *testing.T) {
	h := newHarness(t, map[string]string{"endpointType": "LoadBalancer"}, sourcePVC(keys.TransferID, "t1"), nil, storageClass("standard", true))
	h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
	st := h.run(t, 3, operation.PhaseTransferring)
	require.Equal(t, "192.0.2.10:8443", st.Endpoint)
	require.Len(t, transferPods(t, h.source.Kube, RoleClient), 1)

	ctx := context.Background()
	servers := transferPods(t, h.target.Kube, RoleServer)
	require.Len(t, servers, 1)
	servers[0].Status = corev1.PodStatus{Phase: corev1.PodFailed}
	_, err := h.target.Kube.CoreV1().Pods(servers[0].Namespace).UpdateStatus(ctx, &servers[0], metav1.UpdateOptions{})
	require.NoError(t, err)
	client := transferPods(t, h.source.Kube, RoleClient)[0]
	client.Status = corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: SendContainer,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 12, Message: "connection refused"}}}}}
	_, err = h.source.Kube.CoreV1().Pods(client.Namespace).UpdateStatus(ctx, &client, metav1.UpdateOptions{})
	require.NoError(t, err)
	h.moveEndpoint(t, "")
	h.server = func(*corev1.Pod) corev1.PodStatus { return corev1.PodStatus{Phase: corev1.PodPending} }

	st = h.run(t, 4, operation.PhaseFailed)
	assert.Equal(t, operation.PhaseTransferring, st.Phase)
	assert.Contains(t, st.Message, "waiting for server pod")
	require.Len(t, transferPods(t, h.source.Kube, RoleClient), 1, "no client while the new server is not ready")

	servers = transferPods(t, h.target.Kube, RoleServer)
	require.Len(t, servers, 1)
	servers[0].Status = runningReady()
	_, err = h.target.Kube.CoreV1().Pods(servers[0].Namespace).UpdateStatus(ctx, &servers[0], metav1.UpdateOptions{})
	require.NoError(t, err)
	st = h.run(t, 2, operation.PhaseFailed)
	assert.Contains(t, st.Message, "waiting for LoadBalancer Service", "no client while the endpoint has no address")
	require.Len(t, transferPods(t, h.source.Kube, RoleClient), 1)

	h.moveEndpoint(t, "192.0.2.77")
	h.run(t, 2, operation.PhaseFailed)
	clients := transferPods(t, h.source.Kube, RoleClient)
	require.Len(t, clients, 2)
	for _, p := range clients {
		if p.Labels[keys.TransferAttempt] == "2" {
			assert.Contains(t, p.Spec.Containers[0].Command, "--to=192.0.2.77:8443")
		}
	}
	assert.Equal(t, 2, h.status(t).Attempts)
	assert.Contains(t, h.events(), "attempt 1 failed")
}
