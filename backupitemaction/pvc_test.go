package backupitemaction

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
)

const backupUID = "6f1c2a9e-0000-4000-8000-000000000001"

func migrationBackup(kind string, ann ...string) *velerov1.Backup {
	return builder.ForBackup("velero", "b1").
		ObjectMeta(builder.WithLabels(keys.Migration, kind), builder.WithUID(backupUID), builder.WithAnnotations(ann...)).
		Phase(velerov1.BackupPhaseInProgress).Result()
}

func ordinaryBackup() *velerov1.Backup {
	return builder.ForBackup("velero", "b1").ObjectMeta(builder.WithUID(backupUID)).Result()
}

func boundPVC(ann ...string) *corev1.PersistentVolumeClaim {
	pvc := builder.ForPersistentVolumeClaim("app", "data").
		ObjectMeta(builder.WithAnnotations(ann...)).
		VolumeName("pv-1").StorageClass("standard").Phase(corev1.ClaimBound).Result()
	pvc.UID = "pvc-uid-1"
	pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	return pvc
}

func hostPathPV() *corev1.PersistentVolume {
	pv := builder.ForPersistentVolume("pv-1").ClaimRef("app", "data").ReclaimPolicy(corev1.PersistentVolumeReclaimDelete).StorageClass("standard").Result()
	pv.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/tmp/hostpath_pv/1"}
	return pv
}

func nfsPV() *corev1.PersistentVolume {
	pv := builder.ForPersistentVolume("pv-1").ClaimRef("app", "data").ReclaimPolicy(corev1.PersistentVolumeReclaimDelete).Result()
	pv.Spec.NFS = &corev1.NFSVolumeSource{Server: "nfs.example", Path: "/exports/data"}
	return pv
}

// lease is the data mover's Lease, last renewed at renewed.
func lease(renewed time.Time) *coordinationv1.Lease {
	seconds := int32(15)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: operation.SidecarLease},
		Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: &seconds, RenewTime: &metav1.MicroTime{Time: renewed}}}
}

// requestKey signs requests in these tests.
var requestKey = []byte("0123456789abcdef0123456789abcdef")

// installedSidecar is what a running ferry-datamover leaves in Velero's namespace: its Lease
// and the key requests are signed with.
func installedSidecar() []runtimeObject {
	return []runtimeObject{
		lease(time.Now()),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: operation.RequestKeySecret},
			Data: map[string][]byte{operation.RequestKeyField: requestKey}},
	}
}

func configOf(t *testing.T, data map[string]string) func() (*config.Config, error) {
	c, err := config.Parse(data)
	require.NoError(t, err)
	return func() (*config.Config, error) { return c, nil }
}

func TestPVCActionExecute(t *testing.T) {
	tests := []struct {
		name    string
		pvc     *corev1.PersistentVolumeClaim
		pv      *corev1.PersistentVolume
		backup  *velerov1.Backup
		config  map[string]string
		noLease bool
		// wantAnn are annotations the returned item must carry ("" value: must be absent).
		wantAnn map[string]string
		wantOp  bool
		wantErr []string
	}{
		{
			name:    "ordinary backup passes through untouched",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  ordinaryBackup(),
			wantAnn: map[string]string{keys.PVAction: "", keys.TransferID: ""},
		},
		{
			name:    "a mistyped migration label is an error, not an ordinary backup",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("Stage"),
			wantErr: []string{"backup b1", `ferry.dev/migration="Stage"`},
		},
		{
			name:   "stage copy maps the storage class and requests a transfer",
			pvc:    boundPVC(),
			pv:     hostPathPV(),
			backup: migrationBackup("stage"),
			config: map[string]string{"storageClassMapping": "standard=fast", "accessModeMapping": "RWO=RWX"},
			wantAnn: map[string]string{
				keys.PVAction: "copy", keys.BackupMigration: "stage", keys.TransferID: backupUID, keys.TransferType: "stage",
				keys.TransferTarget: "app/data", keys.TransferStorageClass: "fast", keys.TransferAccessModes: "ReadWriteMany",
				keys.TransferVerify: "false", keys.TransferBackup: "b1",
			},
			wantOp: true,
		},
		{
			name:   "per-PVC choices override the config",
			pvc:    boundPVC(keys.StorageClass, "gold", keys.AccessModes, "ReadWriteOncePod", keys.Verify, "true"),
			pv:     hostPathPV(),
			backup: migrationBackup("final"),
			config: map[string]string{"storageClassMapping": "standard=fast"},
			wantAnn: map[string]string{
				keys.TransferType: "final", keys.TransferStorageClass: "gold", keys.TransferAccessModes: "ReadWriteOncePod", keys.TransferVerify: "true",
			},
			wantOp: true,
		},
		{
			name:    "a stage while a final transfer runs is refused: the final wins",
			pvc:     boundPVC(keys.TransferID, "final-uid", keys.TransferType, "final", keys.TransferBackup, "final-1", keys.TransferStatus, `{"id":"final-uid","phase":"Transferring"}`),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			wantErr: []string{"PVC app/data", "a final transfer (backup final-1) is under way"},
		},
		{
			name:    "a stage after a final ended goes ahead",
			pvc:     boundPVC(keys.TransferID, "final-uid", keys.TransferType, "final", keys.TransferStatus, `{"id":"final-uid","phase":"Failed"}`),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			wantAnn: map[string]string{keys.TransferID: backupUID},
			wantOp:  true,
		},
		{
			name:    "a final replaces a running stage",
			pvc:     boundPVC(keys.TransferID, "stage-uid", keys.TransferStatus, `{"id":"stage-uid","phase":"Transferring"}`),
			pv:      hostPathPV(),
			backup:  migrationBackup("final"),
			wantAnn: map[string]string{keys.TransferID: backupUID, keys.TransferType: "final"},
			wantOp:  true,
		},
		{
			name:    "the Backup allows overwriting: the request says so, signed",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.AllowOverwrite, "true"),
			wantAnn: map[string]string{keys.TransferOverwrite: "true"},
			wantOp:  true,
		},
		{
			name:    "ferry-config allows overwriting, the Backup says no",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.AllowOverwrite, "false"),
			config:  map[string]string{"allowOverwrite": "true"},
			wantAnn: map[string]string{keys.TransferOverwrite: ""},
			wantOp:  true,
		},
		{
			name:    "a malformed allow-overwrite is an error",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.AllowOverwrite, "sure"),
			wantErr: []string{"backup b1", keys.AllowOverwrite, `"sure"`},
		},
		{
			name:    "ferry-config quiesces whole namespaces: a final's request says so, signed",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("final"),
			config:  map[string]string{"quiesceScope": "namespace"},
			wantAnn: map[string]string{keys.TransferType: "final", keys.TransferQuiesceScope: "namespace"},
			wantOp:  true,
		},
		{
			name:    "the Backup narrows the quiesce to the volumes' users",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("final", keys.QuiesceScope, "volumes"),
			config:  map[string]string{"quiesceScope": "namespace"},
			wantAnn: map[string]string{keys.TransferType: "final", keys.TransferQuiesceScope: ""},
			wantOp:  true,
		},
		{
			name:    "a stage never quiesces, whatever the scope",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.QuiesceScope, "namespace"),
			wantAnn: map[string]string{keys.TransferType: "stage", keys.TransferQuiesceScope: ""},
			wantOp:  true,
		},
		{
			name:   "a final of a moved volume quiesces its whole namespace when the Backup asks",
			pvc:    boundPVC(keys.PVAction, "move"),
			pv:     nfsPV(),
			backup: migrationBackup("final", keys.QuiesceScope, "namespace"),
			wantAnn: map[string]string{keys.PVAction: "move", keys.TransferMove: "true",
				keys.TransferQuiesceScope: "namespace"},
			wantOp: true,
		},
		{
			name:    "a malformed quiesce scope names the backup and key",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("final", keys.QuiesceScope, "cluster"),
			wantErr: []string{"backup b1", keys.QuiesceScope, `"cluster"`},
		},
		{
			name:    "ferry-config verify: a final verifies its copy",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("final"),
			config:  map[string]string{"verify": "true"},
			wantAnn: map[string]string{keys.TransferType: "final", keys.TransferVerify: "true"},
			wantOp:  true,
		},
		{
			name:    "ferry-config or PVC verify: a stage does not (the app still writes)",
			pvc:     boundPVC(keys.Verify, "true"),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			config:  map[string]string{"verify": "true"},
			wantAnn: map[string]string{keys.TransferType: "stage", keys.TransferVerify: "false"},
			wantOp:  true,
		},
		{
			name:    "the Backup's ferry.dev/verify asks for a stage too",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.Verify, "true"),
			wantAnn: map[string]string{keys.TransferType: "stage", keys.TransferVerify: "true"},
			wantOp:  true,
		},
		{
			name:    "the Backup's ferry.dev/verify=false overrides the PVC's",
			pvc:     boundPVC(keys.Verify, "true"),
			pv:      hostPathPV(),
			backup:  migrationBackup("final", keys.Verify, "false"),
			wantAnn: map[string]string{keys.TransferType: "final", keys.TransferVerify: "false"},
			wantOp:  true,
		},
		{
			name:    "a malformed verify on the Backup names the backup and key",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("final", keys.Verify, "yes please"),
			wantErr: []string{"backup b1", keys.Verify, `"yes please"`, "want true or false"},
		},
		{
			name:    "namespace mapping from the backup annotation",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.NamespaceMapping, "app:app-new"),
			config:  map[string]string{"namespaceMapping": "app=ignored"},
			wantAnn: map[string]string{keys.TransferTarget: "app-new/data"},
			wantOp:  true,
		},
		{
			name:    "malformed namespace mapping names the backup and key",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage", keys.NamespaceMapping, "app=app-new"),
			wantErr: []string{"backup b1", keys.NamespaceMapping},
		},
		{
			name:    "malformed access-modes annotation names the PVC and key",
			pvc:     boundPVC(keys.AccessModes, "RWZ"),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			wantErr: []string{"PVC app/data", keys.AccessModes, "RWZ"},
		},
		{
			name:    "malformed pv-action annotation",
			pvc:     boundPVC(keys.PVAction, "swing"),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			wantErr: []string{"PVC app/data", `ferry.dev/pv-action="swing"`},
		},
		{
			name:    "explicit move of storage the target cannot reach is an error",
			pvc:     boundPVC(keys.PVAction, "move"),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			wantErr: []string{"PVC app/data asks to be moved", "pv-1"},
		},
		{
			name:    "a stage of an NFS volume to be moved carries the PV and asks for nothing",
			pvc:     boundPVC(keys.PVAction, "move"),
			pv:      nfsPV(),
			backup:  migrationBackup("stage"),
			wantAnn: map[string]string{keys.PVAction: "move", keys.TransferID: ""},
		},
		{
			name:   "a final of an NFS volume to be moved asks for the quiesce of its users, no copy",
			pvc:    boundPVC(keys.PVAction, "move"),
			pv:     nfsPV(),
			backup: migrationBackup("final"),
			wantAnn: map[string]string{keys.PVAction: "move", keys.TransferID: backupUID, keys.TransferType: "final",
				keys.TransferMove: "true", keys.TransferTarget: "app/data", keys.TransferStorageClass: "", keys.TransferVerify: ""},
			wantOp: true,
		},
		{
			name:    "config default move falls back to copy for non-shared storage",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			config:  map[string]string{"defaultPVAction": "move"},
			wantAnn: map[string]string{keys.PVAction: "copy", keys.TransferID: backupUID},
			wantOp:  true,
		},
		{
			name:    "unbound PVC has nothing to transfer",
			pvc:     builder.ForPersistentVolumeClaim("app", "data").Phase(corev1.ClaimPending).Result(),
			backup:  migrationBackup("stage"),
			wantAnn: map[string]string{keys.PVAction: "copy", keys.TransferID: ""},
		},
		{
			name:    "no sidecar installed: a clear error and the live PVC stays as it was",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			noLease: true,
			wantErr: []string{"PVC app/data", "ferry-datamover sidecar is not running", "velero/ferry-datamover"},
		},
		{
			name: "a block volume is copied like any other",
			pvc: func() *corev1.PersistentVolumeClaim {
				p := boundPVC()
				m := corev1.PersistentVolumeBlock
				p.Spec.VolumeMode = &m
				return p
			}(),
			pv:      hostPathPV(),
			backup:  migrationBackup("stage"),
			wantAnn: map[string]string{keys.PVAction: "copy", keys.TransferID: backupUID},
			wantOp:  true,
		},
		{
			name:    "finalizing backups start no operation",
			pvc:     boundPVC(),
			pv:      hostPathPV(),
			backup:  builder.ForBackup("velero", "b1").ObjectMeta(builder.WithLabels(keys.Migration, "stage")).Phase(velerov1.BackupPhaseFinalizing).Result(),
			wantAnn: map[string]string{keys.TransferID: ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtimeObject{tc.pvc}
			if tc.pv != nil {
				objs = append(objs, tc.pv)
			}
			if !tc.noLease {
				objs = append(objs, installedSidecar()...)
			}
			cluster := testutil.NewCluster(testutil.WithObjects(objs...))
			log, logs := testutil.NewLogger()
			a := NewPVCAction(log, cluster.Clients, configOf(t, tc.config))

			item := testutil.Unstructured(t, tc.pvc)
			updated, additional, op, post, err := a.Execute(item, tc.backup)
			live, getErr := cluster.Kube.CoreV1().PersistentVolumeClaims("app").Get(context.Background(), "data", metav1.GetOptions{})
			require.NoError(t, getErr)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				assert.Equal(t, tc.pvc.Annotations, live.Annotations, "the live PVC must not change on error")
				return
			}
			require.NoError(t, err)
			assert.Empty(t, additional)
			assert.Empty(t, post)
			got := updated.(*unstructured.Unstructured).GetAnnotations()
			for k, v := range tc.wantAnn {
				if v == "" {
					assert.NotContains(t, got, k)
					continue
				}
				assert.Equal(t, v, got[k], k)
			}
			if tc.wantOp {
				assert.Equal(t, "app/data/"+backupUID, op)
				req, err := operation.ParseTransferRequest("app", "data", live.Annotations)
				require.NoError(t, err)
				require.NotNil(t, req, "the live PVC carries the transfer request")
				assert.Equal(t, backupUID, req.ID)
				_, err = operation.TransferKeys.Verify(requestKey, live.UID, "app", "data", live.Annotations)
				assert.NoError(t, err, "the sidecar accepts the request: signed for this PVC")
				assert.Contains(t, logs.String(), "app/")
			} else {
				assert.Empty(t, op)
				assert.NotContains(t, live.Annotations, keys.TransferID, "no request on the live PVC")
			}
		})
	}
}

func TestPVCActionExecuteClearsStaleCancel(t *testing.T) {
	pvc := boundPVC(keys.TransferID, "old", keys.TransferCancel, "old")
	cluster := testutil.NewCluster(testutil.WithObjects(append(installedSidecar(), pvc, hostPathPV())...))
	log, _ := testutil.NewLogger()
	a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
	_, _, op, _, err := a.Execute(testutil.Unstructured(t, pvc), migrationBackup("stage"))
	require.NoError(t, err)
	require.NotEmpty(t, op)
	live, err := cluster.Kube.CoreV1().PersistentVolumeClaims("app").Get(context.Background(), "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, live.Annotations, keys.TransferCancel)
	assert.Equal(t, backupUID, live.Annotations[keys.TransferID])
}

func TestPVCActionProgress(t *testing.T) {
	op := "app/data/" + backupUID
	started := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	status := func(s operation.TransferStatus) string {
		s.ID = backupUID
		s.Started = operation.NewTime(started)
		return operation.Encode(&s)
	}
	tests := []struct {
		name          string
		ann           []string
		noPVC         bool
		noLease       bool
		wantCompleted bool
		wantErr       string
		wantDone      int64
		wantTotal     int64
		wantDesc      string
	}{
		{
			name:     "not picked up yet",
			ann:      []string{keys.TransferID, backupUID},
			wantDesc: "Waiting for ferry-datamover",
		},
		{
			name:          "not picked up and no sidecar ever ran",
			ann:           []string{keys.TransferID, backupUID},
			noLease:       true,
			wantCompleted: true,
			wantErr:       "ferry-datamover sidecar is not running",
			wantDesc:      "Waiting for ferry-datamover to pick up the transfer",
		},
		{
			name:     "an older transfer's status is not this one's",
			ann:      []string{keys.TransferID, backupUID, keys.TransferStatus, operation.Encode(&operation.TransferStatus{Header: operation.Header{ID: "older", Phase: operation.PhaseCompleted}})},
			wantDesc: "Waiting",
		},
		{
			name:      "transferring reports bytes",
			ann:       []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseTransferring}, BytesDone: 50, BytesTotal: 200, Percent: 25, RateBPS: 3 << 20, Attempts: 2})},
			wantDone:  50,
			wantTotal: 200,
			wantDesc:  "Transferring 25% at 3.0 MiB/s, about 1s left (attempt 2)",
		},
		{
			name:      "transferring says how long it still needs",
			ann:       []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseTransferring}, BytesDone: 30 << 20, BytesTotal: 120 << 20, Percent: 25, RateBPS: 1 << 20})},
			wantDone:  30 << 20,
			wantTotal: 120 << 20,
			wantDesc:  "Transferring 25% at 1.0 MiB/s, about 1m30s left",
		},
		{
			name:      "verifying after the copy",
			ann:       []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseTransferring}, BytesDone: 200, BytesTotal: 200, Percent: 100, Verifying: 42, Target: "app/data"})},
			wantDone:  200,
			wantTotal: 200,
			wantDesc:  "Transferring 100%, verifying 42% (target app/data)",
		},
		{
			name: "completed and verified",
			ann: []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseCompleted}, BytesDone: 200, BytesTotal: 200, Percent: 100, Target: "app/data",
				Verified: &operation.TransferVerification{Files: 1204, Bytes: 3328599654}})},
			wantCompleted: true,
			wantDone:      200,
			wantTotal:     200,
			wantDesc:      "Completed 100% (target app/data), verified: 1204 files, 3.1 GiB compared, no mismatch",
		},
		{
			name: "completed and verified after a copy by content",
			ann: []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseCompleted}, BytesDone: 200, BytesTotal: 200, Percent: 100,
				Verified: &operation.TransferVerification{Files: 12, Bytes: 200, Repaired: 2}})},
			wantCompleted: true,
			wantDone:      200,
			wantTotal:     200,
			wantDesc:      "Completed 100%, verified: 12 files, 200 B compared, no mismatch (2 found after the first copy, copied again by content)",
		},
		{
			name: "failed verification names the paths",
			ann: []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseFailed, Message: "verification failed: 2 difference(s) …"},
				Verified: &operation.TransferVerification{Files: 42, Bytes: 2686976, Mismatches: 2, First: []string{"d3/", "d3/f7"}}})},
			wantCompleted: true,
			wantErr:       "transfer of PVC app/data failed: verification failed: 2 difference(s)",
			wantDesc:      "Failed, verification: 2 mismatch(es) in 42 files compared: d3/, d3/f7",
		},
		{
			name:          "completed",
			ann:           []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseCompleted}, BytesDone: 200, BytesTotal: 200, Percent: 100})},
			wantCompleted: true,
			wantDone:      200,
			wantTotal:     200,
			wantDesc:      "Completed 100%",
		},
		{
			name:          "failed carries the sidecar's reason",
			ann:           []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseFailed, Message: `storage class "gold" does not exist on the target`}})},
			wantCompleted: true,
			wantErr:       `transfer of PVC app/data failed: storage class "gold" does not exist on the target`,
			wantDesc:      "Failed",
		},
		{
			name:          "cancelled",
			ann:           []string{keys.TransferID, backupUID, keys.TransferStatus, status(operation.TransferStatus{Header: operation.Header{Phase: operation.PhaseCancelled}})},
			wantCompleted: true,
			wantErr:       "transfer of PVC app/data was cancelled",
			wantDesc:      "Cancelled",
		},
		{
			name:          "replaced by a newer request",
			ann:           []string{keys.TransferID, "newer"},
			wantCompleted: true,
			wantErr:       `replaced by transfer "newer"`,
		},
		{
			name:          "malformed status",
			ann:           []string{keys.TransferID, backupUID, keys.TransferStatus, "{oops"},
			wantCompleted: true,
			wantErr:       keys.TransferStatus,
		},
		{
			name:          "PVC deleted",
			noPVC:         true,
			wantCompleted: true,
			wantErr:       "PVC app/data was deleted",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtimeObject
			if !tc.noPVC {
				objs = append(objs, boundPVC(tc.ann...))
			}
			if !tc.noLease {
				objs = append(objs, installedSidecar()...)
			}
			cluster := testutil.NewCluster(testutil.WithObjects(objs...))
			log, _ := testutil.NewLogger()
			a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
			p, err := a.Progress(op, migrationBackup("stage"))
			require.NoError(t, err, "Progress must report through OperationProgress, never an error")
			assertProgress(t, p, tc.wantCompleted, tc.wantErr, tc.wantDone, tc.wantTotal)
			if tc.wantDesc == "" {
				assert.Empty(t, p.Description, "a row without wantDesc expects no description")
			} else {
				assert.Contains(t, p.Description, tc.wantDesc)
			}
		})
	}
}

func TestPVCActionProgressBadOperationID(t *testing.T) {
	cluster := testutil.NewCluster()
	log, _ := testutil.NewLogger()
	a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
	_, err := a.Progress("not-an-id", migrationBackup("stage"))
	assert.Error(t, err)
}

func TestPVCActionCancel(t *testing.T) {
	cluster := testutil.NewCluster(testutil.WithObjects(boundPVC(keys.TransferID, backupUID)))
	log, _ := testutil.NewLogger()
	a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
	require.NoError(t, a.Cancel("app/data/"+backupUID, migrationBackup("stage")))
	live, err := cluster.Kube.CoreV1().PersistentVolumeClaims("app").Get(context.Background(), "data", metav1.GetOptions{})
	require.NoError(t, err)
	req, err := operation.ParseTransferRequest("app", "data", live.Annotations)
	require.NoError(t, err)
	assert.True(t, req.Cancel)
	// cancelling a PVC that is gone is not an error
	assert.NoError(t, a.Cancel("app/gone/"+backupUID, migrationBackup("stage")))
}

// TestPVCActionExecuteDropsAnOlderRequest: keys of an older request that the new one does not
// set are removed from the live PVC, so the signature covers exactly what is there.
func TestPVCActionExecuteDropsAnOlderRequest(t *testing.T) {
	pvc := boundPVC(keys.TransferID, "old", keys.TransferOverwrite, "true", keys.TransferSignature, "v1.1.AAAA")
	cluster := testutil.NewCluster(testutil.WithObjects(append(installedSidecar(), pvc, hostPathPV())...))
	log, _ := testutil.NewLogger()
	a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
	_, _, op, _, err := a.Execute(testutil.Unstructured(t, pvc), migrationBackup("stage"))
	require.NoError(t, err)
	require.NotEmpty(t, op)
	live, err := cluster.Kube.CoreV1().PersistentVolumeClaims("app").Get(context.Background(), "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, live.Annotations, keys.TransferOverwrite, "the older request's overwrite does not carry over")
	assert.NotEqual(t, "v1.1.AAAA", live.Annotations[keys.TransferSignature])
	_, err = operation.TransferKeys.Verify(requestKey, live.UID, "app", "data", live.Annotations)
	assert.NoError(t, err)
}

// TestPVCActionExecuteWithoutRequestKey: with the Lease there but no key (a sidecar that never
// finished starting), the backup fails saying so instead of writing an unsigned request.
func TestPVCActionExecuteWithoutRequestKey(t *testing.T) {
	pvc := boundPVC()
	cluster := testutil.NewCluster(testutil.WithObjects(installedSidecar()[0], pvc, hostPathPV()))
	log, _ := testutil.NewLogger()
	a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
	_, _, _, _, err := a.Execute(testutil.Unstructured(t, pvc), migrationBackup("stage"))
	assert.ErrorContains(t, err, "velero/ferry-request-key, the key that signs ferry's requests, does not exist")
	live, err := cluster.Kube.CoreV1().PersistentVolumeClaims("app").Get(context.Background(), "data", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, live.Annotations, keys.TransferID)
}

// TestStaleLeaseFailsFast: a data mover that stopped (its Lease not renewed for longer than its
// duration) fails a migration backup at once, saying so, instead of waiting for hours; one that
// renewed a moment ago (a restart under way) does not.
func TestStaleLeaseFailsFast(t *testing.T) {
	for _, tc := range []struct {
		name    string
		renewed time.Duration
		wantErr string
	}{
		{name: "stopped two minutes ago", renewed: -2 * time.Minute, wantErr: "ferry-datamover is not running: its Lease velero/ferry-datamover was last renewed 2m0s ago"},
		{name: "restarting", renewed: -20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pvc := boundPVC()
			objs := append(installedSidecar()[1:], lease(time.Now().Add(tc.renewed)), pvc, hostPathPV())
			cluster := testutil.NewCluster(testutil.WithObjects(objs...))
			log, _ := testutil.NewLogger()
			a := NewPVCAction(log, cluster.Clients, configOf(t, nil))
			_, _, op, _, err := a.Execute(testutil.Unstructured(t, pvc), migrationBackup("stage"))
			if tc.wantErr == "" {
				require.NoError(t, err)
				assert.NotEmpty(t, op)
				return
			}
			assert.ErrorContains(t, err, tc.wantErr)
			// A request written before the data mover stopped, that it never picked up.
			_, err = cluster.Kube.CoreV1().PersistentVolumeClaims("app").Patch(context.Background(), "data", types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"`+keys.TransferID+`":"`+backupUID+`"}}}`), metav1.PatchOptions{})
			require.NoError(t, err)
			p, err := a.Progress("app/data/"+backupUID, migrationBackup("stage"))
			require.NoError(t, err)
			assert.True(t, p.Completed)
			assert.Contains(t, p.Err, "ferry-datamover is not running", "a request nobody picks up fails too")
		})
	}
}
