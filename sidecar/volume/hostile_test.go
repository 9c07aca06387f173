package volume

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
	"github.com/ferry-dev/ferry/sidecar"
)

// TestHostileRequests: what a tenant who may edit PVCs in their namespace (and an admin's
// mistakes) can write, and what the sidecar does with it. Every row asserts the exact outcome
// and that nothing was created or deleted on the target unless the row says the transfer goes
// ahead, and that the victims are unchanged.
func TestHostileRequests(t *testing.T) {
	const victimData = "test.ferry.dev/victim-data" // marks a target PVC holding someone's files
	otherKey := []byte("fedcba9876543210fedcba9876543210")
	victim := func(ns, name string, ann ...string) *corev1.PersistentVolumeClaim {
		p := sourcePVC(ann...)
		p.Namespace, p.Name, p.UID = ns, name, "victim-uid"
		p.Annotations[victimData] = "true"
		return p
	}
	// signedBy signs the request in ann for PVC app/data as someone holding key would, at when.
	signedBy := func(key []byte, uid, ns, name string, when time.Time, ann ...string) []string {
		a := map[string]string{}
		for i := 0; i+1 < len(ann); i += 2 {
			a[ann[i]] = ann[i+1]
		}
		sig, err := operation.TransferKeys.Sign(key, types.UID(uid), ns, name, a, when)
		require.NoError(t, err)
		return append(ann, keys.TransferSignature, sig)
	}
	legit := func(ann ...string) []string { return signedBy(requestKey, "pvc-uid", "app", "data", t0, ann...) }
	// tampered is a signed request with one key changed afterwards.
	tampered := func(key, value string, ann ...string) []string {
		signed := legit(ann...)
		for i := 0; i+1 < len(signed); i += 2 {
			if signed[i] == key {
				signed[i+1] = value
				return signed
			}
		}
		return append(signed, key, value)
	}
	appPod := func(ns, name, claim string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:   corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	}
	std := storageClass("standard", true)

	tests := []struct {
		name string
		ann  []string // on the source PVC app/data, exactly as given (signed or not)
		// oneCluster: the target is the source cluster (targetKubeconfigSecret "").
		oneCluster bool
		status     *operation.TransferStatus
		config     map[string]string
		source     []runtime.Object
		target     []runtime.Object
		// phase and message: the outcome; goesAhead: the transfer proceeds (target objects appear).
		phase     operation.Phase
		message   []string
		event     string
		goesAhead bool
		check     func(t *testing.T, h *harness)
	}{
		// Requests nobody with the key signed.
		{name: "an unsigned request", ann: []string{keys.TransferID, "x"}, phase: operation.PhaseRefused, message: []string{"the request is not signed"}},
		{name: "an unsigned request for another tenant's PVC", ann: []string{keys.TransferID, "x", keys.TransferTarget, "victim/db"},
			target: []runtime.Object{victim("victim", "db")}, phase: operation.PhaseRefused, message: []string{"the request is not signed"}, event: "TransferRefused"},
		{name: "an unsigned request into a PVC of the same name in another namespace", ann: []string{keys.TransferID, "x", keys.TransferTarget, "victim/data"},
			target: []runtime.Object{victim("victim", "data")}, phase: operation.PhaseRefused, message: []string{"not signed"}},
		{name: "an unsigned request for another PVC of the same namespace", ann: []string{keys.TransferID, "x", keys.TransferTarget, "app/db"},
			target: []runtime.Object{victim("app", "db")}, phase: operation.PhaseRefused, message: []string{"not signed"}},
		{name: "an unsigned final (would quiesce)", ann: []string{keys.TransferID, "x", keys.TransferType, "final"}, phase: operation.PhaseRefused},
		{name: "an unsigned request with overwrite", ann: []string{keys.TransferID, "x", keys.TransferOverwrite, "true"}, target: []runtime.Object{victim("app", "data")},
			phase: operation.PhaseRefused},
		{name: "a garbage signature", ann: []string{keys.TransferID, "x", keys.TransferSignature, "trust me"}, phase: operation.PhaseRefused,
			message: []string{"not a ferry request signature"}},
		{name: "a signature of another scheme", ann: []string{keys.TransferID, "x", keys.TransferSignature, "v9.1.AAAA"}, phase: operation.PhaseRefused},
		{name: "signed with another key", ann: signedBy(otherKey, "pvc-uid", "app", "data", t0, keys.TransferID, "x"), phase: operation.PhaseRefused,
			message: []string{"does not match"}},
		// A signed request changed afterwards.
		{name: "signed, target changed to another tenant", ann: tampered(keys.TransferTarget, "victim/db", keys.TransferID, "b1"),
			target: []runtime.Object{victim("victim", "db")}, phase: operation.PhaseRefused, message: []string{"does not match", "ferry acts only on transfer requests from Velero's plugins or an admin's"}},
		{name: "signed, overwrite added", ann: tampered(keys.TransferOverwrite, "true", keys.TransferID, "b1"), target: []runtime.Object{victim("app", "data")},
			phase: operation.PhaseRefused, message: []string{"does not match"}},
		{name: "signed, stage turned final", ann: tampered(keys.TransferType, "final", keys.TransferID, "b1", keys.TransferType, "stage"), phase: operation.PhaseRefused},
		{name: "signed, storage class changed", ann: tampered(keys.TransferStorageClass, "gold", keys.TransferID, "b1", keys.TransferStorageClass, "standard"),
			phase: operation.PhaseRefused},
		{name: "signed, verify removed", ann: func() []string {
			a := legit(keys.TransferID, "b1", keys.TransferVerify, "true")
			return append(a[:2:2], a[4:]...)
		}(), phase: operation.PhaseRefused},
		{name: "signed, a new ID put in to start another run", ann: tampered(keys.TransferID, "b2", keys.TransferID, "b1"), phase: operation.PhaseRefused},
		{name: "a signature copied from another PVC", ann: signedBy(requestKey, "victim-uid", "victim", "db", t0, keys.TransferID, "b1"), phase: operation.PhaseRefused,
			message: []string{"does not match"}},
		{name: "a signature copied from the PVC's namesake in another namespace", ann: signedBy(requestKey, "pvc-uid", "other", "data", t0, keys.TransferID, "b1"),
			phase: operation.PhaseRefused},
		{name: "a signature of a deleted PVC of the same name (another UID)", ann: signedBy(requestKey, "old-uid", "app", "data", t0, keys.TransferID, "b1"),
			phase: operation.PhaseRefused},
		{name: "an old signed request put back (replay after a day)", ann: signedBy(requestKey, "pvc-uid", "app", "data", t0.Add(-25*time.Hour), keys.TransferID, "b0"),
			phase: operation.PhaseRefused, message: []string{"the request was signed 25h0m0s ago, longer than 24h0m0s"}},
		{name: "a forged status for an unsigned request does not make it run", ann: []string{keys.TransferID, "x", keys.TransferTarget, "victim/db"},
			status: &operation.TransferStatus{Header: operation.Header{ID: "x", Phase: operation.PhaseTransferring}, Endpoint: "evil.example:443"},
			target: []runtime.Object{victim("victim", "db")}, phase: operation.PhaseRefused},
		// Signed requests whose target is not ferry's to fill.
		{name: "a target PVC ferry filled from another PVC", ann: legit(keys.TransferID, "b1", keys.TransferTarget, "app/data"),
			target: []runtime.Object{std, victim("app", "data", keys.PairedWith, "victim-uid")}, phase: operation.PhaseRefused,
			message: []string{"target PVC app/data holds data ferry copied from another PVC (UID victim-uid)", keys.AllowOverwrite}},
		{name: "a pre-provisioned target PVC holding data", ann: legit(keys.TransferID, "b1"), target: []runtime.Object{std, victim("app", "data")},
			phase: operation.PhaseRefused, message: []string{"target PVC app/data holds data ferry did not write"}},
		{name: "a final into a target PVC an app on the target uses", ann: legit(keys.TransferID, "b1", keys.TransferType, "final"),
			target: []runtime.Object{std, victim("app", "data", keys.PairedWith, "pvc-uid"), appPod("app", "web-1", "data")}, phase: operation.PhaseRefused,
			message: []string{"target PVC app/data is in use by pod web-1 on the target"}},
		{name: "one cluster: the source PVC as its own target", ann: legit(keys.TransferID, "b1"), oneCluster: true, source: []runtime.Object{std},
			phase: operation.PhaseRefused, message: []string{"the target is the source PVC itself"}},
		// Admins' mistakes: refused or failed, nothing made.
		{name: "signed but malformed", ann: legit(keys.TransferID, "b1", keys.TransferType, "later"), phase: operation.PhaseFailed,
			message: []string{"has a malformed transfer request", keys.TransferType}},
		{name: "signed, target name not a name", ann: legit(keys.TransferID, "b1", keys.TransferTarget, "app/Bad_Name"), phase: operation.PhaseFailed,
			message: []string{`name "Bad_Name" is not a valid PVC name`}},
		{name: "an unknown storage class", ann: legit(keys.TransferID, "b1", keys.TransferStorageClass, "gold"), target: []runtime.Object{std},
			phase: operation.PhaseFailed, message: []string{`storage class "gold" does not exist on the target cluster (it has: standard)`}},
		{name: "a malformed ferry-config", ann: legit(keys.TransferID, "b1"), config: map[string]string{"streams": "many"}, phase: operation.PhaseFailed,
			message: []string{`key "streams"`}},
		{name: "a malformed per-PVC choice", ann: legit(keys.TransferID, "b1", keys.AccessModes, "RWZ"), phase: operation.PhaseFailed,
			message: []string{keys.AccessModes}},
		{name: "a final with a pod no controller owns", ann: legit(keys.TransferID, "b1", keys.TransferType, "final"), source: []runtime.Object{appPod("app", "debug", "data")},
			target: []runtime.Object{std}, phase: operation.PhaseFailed, message: []string{"pod app/debug mounts PVC data and has no controller"}},
		// What goes ahead, for contrast.
		{name: "a tenant's cancel of a signed request is honoured", ann: legit(keys.TransferID, "b1", keys.TransferCancel, "b1"), phase: operation.PhaseCancelled},
		{name: "a stage into a target PVC the target's app uses: warned", ann: legit(keys.TransferID, "b1"),
			target: []runtime.Object{std, victim("app", "data", keys.PairedWith, "pvc-uid"), appPod("app", "web-1", "data")}, goesAhead: true, event: "TargetPVCInUse"},
		{name: "an empty pre-provisioned target PVC is filled and paired", ann: legit(keys.TransferID, "b1"),
			target: []runtime.Object{std, func() runtime.Object { p := victim("app", "data"); delete(p.Annotations, victimData); return p }()}, goesAhead: true,
			check: func(t *testing.T, h *harness) {
				p, err := h.target.Kube.CoreV1().PersistentVolumeClaims("app").Get(context.Background(), "data", metav1.GetOptions{})
				require.NoError(t, err)
				assert.Equal(t, "pvc-uid", p.Annotations[keys.PairedWith], "paired once its server found it empty")
			}},
		{name: "an admin allowed overwriting a PVC filled from elsewhere", ann: legit(keys.TransferID, "b1", keys.TransferOverwrite, "true"),
			target: []runtime.Object{std, victim("app", "data", keys.PairedWith, "victim-uid")}, goesAhead: true, event: "TargetOverwritten"},
		{name: "one cluster, another namespace", ann: legit(keys.TransferID, "b1", keys.TransferTarget, "app-copy/data"), oneCluster: true,
			source: []runtime.Object{std}, goesAhead: true},
		{name: "a request accepted a day ago keeps going", ann: signedBy(requestKey, "pvc-uid", "app", "data", t0.Add(-30*time.Hour), keys.TransferID, "b0"),
			status: &operation.TransferStatus{Header: operation.Header{ID: "b0", Phase: operation.PhasePending}}, target: []runtime.Object{std}, goesAhead: true},
	}
	require.GreaterOrEqual(t, len(tests), 30)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pvc := sourcePVC(tc.ann...)
			if tc.status != nil {
				pvc.Annotations[keys.TransferStatus] = operation.Encode(tc.status)
			}
			cfg := map[string]string{"endpointType": "ClusterIP"}
			for k, v := range tc.config {
				cfg[k] = v
			}
			if tc.oneCluster {
				cfg["targetKubeconfigSecret"] = ""
			}
			target := tc.target
			for _, o := range tc.target {
				if p, ok := o.(*corev1.PersistentVolumeClaim); ok {
					target = append(target, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}}) // a PVC's namespace exists
				}
			}
			h := newUnsignedHarness(t, cfg, pvc, tc.source, target...)
			if tc.oneCluster {
				h.Targets = sidecar.FixedTarget{Clients: h.source.Clients}
			}
			// The fake kubelet's server refuses a volume with someone's files, as serve --require-empty does.
			h.server = func(p *corev1.Pod) corev1.PodStatus {
				claim := p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName
				target, err := h.target.Kube.CoreV1().PersistentVolumeClaims(p.Namespace).Get(context.Background(), claim, metav1.GetOptions{})
				if err == nil && target.Annotations[victimData] == "true" && strings.Contains(strings.Join(p.Spec.Containers[0].Command, " "), "--require-empty=true") {
					return corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{{Name: ServeContainer,
						State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: dataplane.ExitTargetNotEmpty}}}}}
				}
				return runningReady()
			}
			h.client = func(int) clientRun { return clientRun{phase: corev1.PodRunning} }
			before := snapshot(t, h)
			st := h.run(t, 8, operation.PhaseTransferring)
			require.NotNil(t, st)
			events := h.events()
			if tc.event != "" {
				assert.Contains(t, events, tc.event)
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			for _, v := range tc.target {
				if p, ok := v.(*corev1.PersistentVolumeClaim); ok {
					got, err := h.target.Kube.CoreV1().PersistentVolumeClaims(p.Namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
					require.NoError(t, err, "the victim's PVC %s/%s is never deleted", p.Namespace, p.Name)
					assert.Equal(t, p.Spec, got.Spec)
				}
			}
			if tc.goesAhead {
				assert.Equal(t, operation.PhaseTransferring, st.Phase, st.Message)
				return
			}
			assert.Equal(t, tc.phase, st.Phase, st.Message)
			for _, m := range tc.message {
				assert.Contains(t, st.Message, m)
			}
			assert.Equal(t, before, snapshot(t, h), "nothing created or deleted on either cluster")
			if tc.phase == operation.PhaseRefused {
				assert.Contains(t, events, "TransferRefused")
			}
			web, err := h.source.Dynamic.Resource(deployments).Namespace("app").List(context.Background(), metav1.ListOptions{LabelSelector: keys.Quiesced})
			require.NoError(t, err)
			assert.Empty(t, web.Items, "nothing quiesced")
		})
	}
}

// snapshot names every object a transfer could make or a mistake could remove, on both
// clusters (the PVC's own annotations aside).
func snapshot(t *testing.T, h *harness) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for side, c := range map[string]*testutil.Cluster{"source": h.source, "target": h.target} {
		add := func(kind string, items []metav1.Object) {
			for _, o := range items {
				out = append(out, side+" "+kind+" "+o.GetNamespace()+"/"+o.GetName())
			}
		}
		nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		pvcs, err := c.Kube.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		secrets, err := c.Kube.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		svcs, err := c.Kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		sas, err := c.Kube.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		add("Namespace", objects(nss.Items))
		add("PVC", objects(pvcs.Items))
		add("Pod", objects(pods.Items))
		add("Secret", objects(secrets.Items))
		add("Service", objects(svcs.Items))
		add("ServiceAccount", objects(sas.Items))
		for _, p := range pvcs.Items {
			out = append(out, side+" PVC "+p.Namespace+"/"+p.Name+" paired with "+p.Annotations[keys.PairedWith])
		}
	}
	sort.Strings(out)
	return out
}

func objects[T any, P interface {
	*T
	metav1.Object
}](items []T) []metav1.Object {
	out := make([]metav1.Object, len(items))
	for i := range items {
		out[i] = P(&items[i])
	}
	return out
}
