package datamover

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	dynfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/transfer"
)

// testController wires a Controller to fake source and target clusters. Fakes prove the
// decisions; the transfers themselves are proven on the local stack (test/e2e).
type testController struct {
	*Controller
	source   client.Client
	target   *kubefake.Clientset
	recorder *record.FakeRecorder
}

func newTestController(t *testing.T, cfg map[string]string, source []client.Object, target ...runtime.Object) *testController {
	t.Helper()
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	objs := append([]client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: transfer.SidecarLease}},
	}, source...)
	if cfg != nil {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: config.ConfigMapName}, Data: cfg})
	}
	src := crfake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	var kobjs []runtime.Object
	for _, o := range objs {
		kobjs = append(kobjs, o.(runtime.Object))
	}
	srcKube := kubefake.NewSimpleClientset(kobjs...)
	tgt := kubefake.NewSimpleClientset(target...)
	rec := record.NewFakeRecorder(100)
	c := &Controller{
		client: src, reader: src, kube: srcKube, dynamic: dynfake.NewSimpleDynamicClient(runtime.NewScheme()),
		apis: kube.NewAPIs(srcKube.Discovery()), namespace: "velero", recorder: rec,
		targets: &kube.Targets{Fixed: &kube.Clients{Kube: tgt, Dynamic: dynfake.NewSimpleDynamicClient(runtime.NewScheme()), APIs: kube.NewAPIs(tgt.Discovery()),
			Config: &rest.Config{Host: "https://target.example"}}},
		admission: newAdmission(),
		now:       func() time.Time { return time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC) },
	}
	return &testController{Controller: c, source: src, target: tgt, recorder: rec}
}

func sourcePVC(ann ...string) *corev1.PersistentVolumeClaim {
	a := map[string]string{}
	for i := 0; i+1 < len(ann); i += 2 {
		a[ann[i]] = ann[i+1]
	}
	sc := "standard"
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data", Annotations: a},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: &sc, VolumeName: "pv-1",
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
}

// reconcileUntil reconciles the PVC until its status reaches a terminal phase or n rounds pass.
func (tc *testController) reconcileUntil(t *testing.T, n int) *transfer.Status {
	t.Helper()
	var st *transfer.Status
	for i := 0; i < n; i++ {
		_, err := tc.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "app", Name: "data"}})
		require.NoError(t, err)
		var pvc corev1.PersistentVolumeClaim
		require.NoError(t, tc.source.Get(context.Background(), types.NamespacedName{Namespace: "app", Name: "data"}, &pvc))
		st, err = transfer.ParseStatus(pvc.Annotations)
		require.NoError(t, err)
		if st != nil && st.Phase.Terminal() {
			break
		}
	}
	return st
}

func (tc *testController) events() string {
	var all []string
	for {
		select {
		case e := <-tc.recorder.Events:
			all = append(all, e)
		default:
			return strings.Join(all, "\n")
		}
	}
}

func standardClass(name string, isDefault bool) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "kubernetes.io/host-path"}
	if isDefault {
		sc.Annotations = map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}
	}
	return sc
}

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
			config:    map[string]string{},
			target:    []runtime.Object{standardClass("standard", true), standardClass("fast", false)},
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
			config:    map[string]string{},
			target:    []runtime.Object{standardClass("fast", false)},
			wantMsg:   []string{"no default storage class"},
			wantEvent: "TransferFailed",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestController(t, tc.config, []client.Object{tc.pvc}, tc.target...)
			st := c.reconcileUntil(t, 10)
			require.NotNil(t, st)
			assert.Equal(t, transfer.PhaseFailed, st.Phase)
			for _, w := range tc.wantMsg {
				assert.Contains(t, st.Message, w)
			}
			assert.Contains(t, c.events(), tc.wantEvent)
			// nothing was created on the target, and the source PVC is unchanged but for the status
			pvcs, err := c.target.CoreV1().PersistentVolumeClaims("").List(context.Background(), metav1.ListOptions{})
			require.NoError(t, err)
			assert.Empty(t, pvcs.Items)
			pods, _ := c.target.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
			assert.Empty(t, pods.Items)
		})
	}
}

func TestReconcileMissingTargetSecret(t *testing.T) {
	c := newTestController(t, map[string]string{"targetKubeconfigSecret": "nowhere"}, []client.Object{sourcePVC(keys.TransferID, "t1")})
	c.targets = &kube.Targets{Source: &kube.Clients{Kube: c.kube, Namespace: "velero"}}
	st := c.reconcileUntil(t, 10)
	require.NotNil(t, st)
	assert.Equal(t, transfer.PhaseFailed, st.Phase)
	assert.Contains(t, st.Message, "Secret velero/nowhere does not exist")
	assert.Contains(t, st.Message, "kubectl -n velero create secret generic nowhere --from-file=kubeconfig=")
}

func TestReconcilePreparesTheTarget(t *testing.T) {
	c := newTestController(t, map[string]string{"storageClassMapping": "standard=fast", "endpointType": "ClusterIP"},
		[]client.Object{sourcePVC(keys.TransferID, "t1", keys.TransferTarget, "app2/data")},
		standardClass("fast", true))
	st := c.reconcileUntil(t, 6)
	require.NotNil(t, st)
	assert.Equal(t, transfer.PhasePreparing, st.Phase)
	assert.Contains(t, st.Message, "waiting", "the fake target never runs the server pod")
	ctx := context.Background()
	pvc, err := c.target.CoreV1().PersistentVolumeClaims("app2").Get(ctx, "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "fast", *pvc.Spec.StorageClassName)
	assert.Equal(t, resource.MustParse("1Gi"), pvc.Spec.Resources.Requests[corev1.ResourceStorage])
	_, err = c.target.CoreV1().Namespaces().Get(ctx, "app2", metav1.GetOptions{})
	require.NoError(t, err)
	n := namesFor("app", "data")
	srv, err := c.target.CoreV1().Secrets("app2").Get(ctx, n.server, metav1.GetOptions{})
	require.NoError(t, err)
	cli, err := c.kube.CoreV1().Secrets("app").Get(ctx, n.client, metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, srv.Data[CAFile], cli.Data[CAFile], "one CA per transfer, on both sides")
	assert.NotEqual(t, srv.Data[KeyFile], cli.Data[KeyFile])
	pods, err := c.target.CoreV1().Pods("app2").List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, pods.Items, 1, "one server pod, even after several reconciles")
	sa, err := c.target.CoreV1().ServiceAccounts("app2").Get(ctx, TransferServiceAccount, metav1.GetOptions{})
	require.NoError(t, err)
	svc, err := c.target.CoreV1().Services("app2").Get(ctx, n.server, metav1.GetOptions{})
	require.NoError(t, err)
	// A backup of either cluster taken meanwhile (the final one always is) leaves these out.
	for _, obj := range []metav1.Object{srv, cli, &pods.Items[0], sa, svc} {
		assert.Equal(t, "true", obj.GetLabels()[keys.ExcludeFromBackup], "%s", obj.GetName())
	}
	assert.NotContains(t, pvc.Labels, keys.ExcludeFromBackup, "the target PVC is the user's")

	// Cancel: everything of the transfer goes, the target PVC and namespace stay.
	var live corev1.PersistentVolumeClaim
	require.NoError(t, c.source.Get(ctx, types.NamespacedName{Namespace: "app", Name: "data"}, &live))
	live.Annotations[keys.TransferCancel] = "t1"
	require.NoError(t, c.source.Update(ctx, &live))
	st = c.reconcileUntil(t, 3)
	assert.Equal(t, transfer.PhaseCancelled, st.Phase)
	pods, _ = c.target.CoreV1().Pods("app2").List(ctx, metav1.ListOptions{})
	assert.Empty(t, pods.Items)
	secrets, _ := c.target.CoreV1().Secrets("app2").List(ctx, metav1.ListOptions{})
	assert.Empty(t, secrets.Items)
	_, err = c.kube.CoreV1().Secrets("app").Get(ctx, n.client, metav1.GetOptions{})
	assert.True(t, err != nil, "client certificate Secret deleted")
	_, err = c.target.CoreV1().PersistentVolumeClaims("app2").Get(ctx, "data", metav1.GetOptions{})
	assert.NoError(t, err, "the target PVC is never deleted")
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
