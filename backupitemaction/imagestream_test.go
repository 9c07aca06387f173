package backupitemaction

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
)

const (
	internalRegistry = "image-registry.openshift-image-registry.svc:5000"
	imageDigest      = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

// imageStream builds app/web whose tag v1 was pushed to reference (newest item); ann are
// key/value pairs.
func imageStream(reference string, ann ...string) *unstructured.Unstructured {
	u := testutil.Object("image.openshift.io/v1", "ImageStream", "app", "web", map[string]any{
		"status.dockerImageRepository": internalRegistry + "/app/web",
		"status.tags": []any{map[string]any{"tag": "v1", "items": []any{map[string]any{
			"dockerImageReference": reference, "image": imageDigest, "created": "2026-11-20T10:00:00Z", "generation": int64(1),
		}}}},
	})
	u.SetUID("stream-uid-1")
	if len(ann) > 0 {
		m := map[string]string{}
		for i := 0; i+1 < len(ann); i += 2 {
			m[ann[i]] = ann[i+1]
		}
		u.SetAnnotations(m)
	}
	return u
}

func localStream(ann ...string) *unstructured.Unstructured {
	return imageStream(internalRegistry+"/app/web@"+imageDigest, ann...)
}

func imagesConfig() *unstructured.Unstructured {
	return testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{"status.internalRegistryHostname": internalRegistry})
}

func TestImageStreamActionExecute(t *testing.T) {
	tests := []struct {
		name    string
		stream  *unstructured.Unstructured
		backup  *velerov1.Backup
		config  map[string]string
		noLease bool
		plain   bool // a cluster without the OpenShift APIs
		// wantTarget is the requested target "namespace/name"; "" means no request.
		wantTarget string
		wantLog    string
		wantErr    []string
	}{
		{
			name:   "ordinary backup: no copy",
			stream: localStream(),
			backup: ordinaryBackup(),
		},
		{
			name:       "stage backup: a request on the live stream",
			stream:     localStream(),
			backup:     migrationBackup("stage"),
			wantTarget: "app/web",
			wantLog:    "requested a copy",
		},
		{
			name:       "the namespace mapping of the backup decides the target",
			stream:     localStream(),
			backup:     migrationBackup("final", keys.NamespaceMapping, "app:app-new"),
			config:     map[string]string{"namespaceMapping": "app=ignored"},
			wantTarget: "app-new/web",
		},
		{
			name:       "or ferry-config's",
			stream:     localStream(),
			backup:     migrationBackup("stage"),
			config:     map[string]string{"namespaceMapping": "app=app-b"},
			wantTarget: "app-b/web",
		},
		{
			name:    "imageCopy=false: no copy",
			stream:  localStream(),
			backup:  migrationBackup("stage"),
			config:  map[string]string{"imageCopy": "false"},
			wantLog: "imageCopy=false",
		},
		{
			name:    "skip annotation: no copy",
			stream:  localStream(keys.SkipImageCopy, "true"),
			backup:  migrationBackup("stage"),
			wantLog: keys.SkipImageCopy + "=true",
		},
		{
			name:    "a malformed skip annotation names the stream and key",
			stream:  localStream(keys.SkipImageCopy, "yes"),
			backup:  migrationBackup("stage"),
			wantErr: []string{"ImageStream app/web", keys.SkipImageCopy, `"yes"`},
		},
		{
			name:   "only external images: nothing to copy",
			stream: imageStream("quay.io/org/web@" + imageDigest),
			backup: migrationBackup("stage"),
		},
		{
			name:    "plain Kubernetes without internalRegistry: nothing to copy",
			stream:  localStream(),
			backup:  migrationBackup("stage"),
			plain:   true,
			wantLog: "no internal registry",
		},
		{
			name:       "plain Kubernetes with internalRegistry configured",
			stream:     imageStream("registry.local:5000/app/web@" + imageDigest),
			backup:     migrationBackup("stage"),
			config:     map[string]string{"internalRegistry": "registry.local:5000"},
			plain:      true,
			wantTarget: "app/web",
		},
		{
			name:    "no sidecar: a clear error, the live stream untouched",
			stream:  localStream(),
			backup:  migrationBackup("stage"),
			noLease: true,
			wantErr: []string{"ImageStream app/web", "ferry-datamover sidecar is not running"},
		},
		{
			name:    "a mistyped migration label is an error",
			stream:  localStream(),
			backup:  migrationBackup("Stage"),
			wantErr: []string{`ferry.dev/migration="Stage"`},
		},
		{
			name:    "malformed namespace mapping",
			stream:  localStream(),
			backup:  migrationBackup("stage", keys.NamespaceMapping, "app=x"),
			wantErr: []string{"backup b1", keys.NamespaceMapping},
		},
		{
			name:   "finalizing backups start no operation",
			stream: localStream(),
			backup: func() *velerov1.Backup {
				b := migrationBackup("stage")
				b.Status.Phase = velerov1.BackupPhaseFinalizing
				return b
			}(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var kubeObjs []runtimeObject
			if !tc.noLease {
				kubeObjs = append(kubeObjs, installedSidecar()...)
			}
			opts := []testutil.Option{testutil.WithObjects(kubeObjs...), testutil.WithDynamicObjects(tc.stream.DeepCopy())}
			if !tc.plain {
				opts = append(opts, testutil.OpenShift(), testutil.WithDynamicObjects(imagesConfig()))
			}
			cluster := testutil.NewCluster(opts...)
			log, logs := testutil.NewLogger()
			a := NewImageStreamAction(log, cluster.Clients, configOf(t, tc.config))

			updated, additional, op, post, err := a.Execute(tc.stream.DeepCopy(), tc.backup)
			live, getErr := cluster.Dynamic.Resource(imageStreams).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
			require.NoError(t, getErr)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				assert.Equal(t, tc.stream.GetAnnotations(), live.GetAnnotations(), "the live stream must not change on error")
				return
			}
			require.NoError(t, err)
			assert.Empty(t, additional)
			assert.Empty(t, post)
			assert.Equal(t, tc.stream.Object["spec"], updated.UnstructuredContent()["spec"], "the backed-up stream keeps its spec")
			assert.Equal(t, tc.stream.Object["status"], updated.UnstructuredContent()["status"])
			for k := range updated.(*unstructured.Unstructured).GetAnnotations() {
				assert.False(t, keys.IsImageCopyKey(k), "copy annotation %s must not be backed up", k)
			}
			if tc.wantLog != "" {
				assert.Contains(t, logs.String(), tc.wantLog)
			}
			req, err := operation.ParseImageCopyRequest("app", "web", live.GetAnnotations())
			require.NoError(t, err)
			if tc.wantTarget == "" {
				assert.Empty(t, op)
				assert.Nil(t, req, "no request on the live stream")
				return
			}
			assert.Equal(t, "app/web/"+backupUID, op)
			require.NotNil(t, req)
			assert.Equal(t, backupUID, req.ID)
			assert.Equal(t, tc.wantTarget, req.TargetNamespace+"/"+req.TargetName)
			assert.Equal(t, "b1", req.Backup)
			_, err = operation.ImageCopyKeys.Verify(requestKey, live.GetUID(), "app", "web", live.GetAnnotations())
			assert.NoError(t, err, "the sidecar accepts the request: signed for this stream")
		})
	}
}

func TestImageStreamActionExecuteClearsStaleState(t *testing.T) {
	stale := localStream(keys.ImageCopyID, "old", keys.ImageCopyCancel, "old", keys.ImageCopyStatus, `{"id":"old","phase":"Cancelled"}`)
	cluster := testutil.NewCluster(testutil.OpenShift(), testutil.WithObjects(installedSidecar()...), testutil.WithDynamicObjects(stale.DeepCopy(), imagesConfig()))
	log, _ := testutil.NewLogger()
	a := NewImageStreamAction(log, cluster.Clients, configOf(t, nil))
	updated, _, op, _, err := a.Execute(stale.DeepCopy(), migrationBackup("stage"))
	require.NoError(t, err)
	require.NotEmpty(t, op)
	assert.Empty(t, updated.(*unstructured.Unstructured).GetAnnotations(), "no copy annotation is backed up")
	live, err := cluster.Dynamic.Resource(imageStreams).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, live.GetAnnotations(), keys.ImageCopyCancel, "an old cancel must not stop the new copy")
	assert.Equal(t, backupUID, live.GetAnnotations()[keys.ImageCopyID])
}

func TestImageStreamActionProgress(t *testing.T) {
	op := "app/web/" + backupUID
	started := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	status := func(s operation.ImageCopyStatus) string {
		s.ID = backupUID
		s.Started = operation.NewTime(started)
		return operation.Encode(&s)
	}
	failed := operation.ImageCopyStatus{Header: operation.Header{Phase: operation.PhaseFailed}, Images: 3, ImagesDone: 3}
	failed.AddError("gone", imageDigest, "manifest unknown")
	failed.Message = failed.ErrorSummary()
	tests := []struct {
		name          string
		ann           []string
		noStream      bool
		noLease       bool
		wantCompleted bool
		wantErr       string
		wantDone      int64
		wantTotal     int64
		wantDesc      string
	}{
		{name: "not picked up yet", ann: []string{keys.ImageCopyID, backupUID}, wantDesc: "Waiting for ferry-datamover"},
		{
			name: "not picked up and no sidecar ever ran", ann: []string{keys.ImageCopyID, backupUID}, noLease: true,
			wantCompleted: true, wantErr: "ferry-datamover sidecar is not running", wantDesc: "Waiting for ferry-datamover to pick up the image copy",
		},
		{
			name:     "an older copy's status is not this one's",
			ann:      []string{keys.ImageCopyID, backupUID, keys.ImageCopyStatus, operation.Encode(&operation.ImageCopyStatus{Header: operation.Header{ID: "older", Phase: operation.PhaseCompleted}})},
			wantDesc: "Waiting",
		},
		{
			name:      "copying reports images and blobs",
			ann:       []string{keys.ImageCopyID, backupUID, keys.ImageCopyStatus, status(operation.ImageCopyStatus{Header: operation.Header{Phase: operation.PhaseCopying}, Images: 4, ImagesDone: 1, BlobsSent: 3, BlobsSkipped: 2, BytesSent: 3 << 20, Target: "reg.example/app/web"})},
			wantDone:  1,
			wantTotal: 4,
			wantDesc:  "Copying 1/4 images: 3 blobs sent (3.0 MiB), 2 already in the target, to reg.example/app/web",
		},
		{
			name:          "completed",
			ann:           []string{keys.ImageCopyID, backupUID, keys.ImageCopyStatus, status(operation.ImageCopyStatus{Header: operation.Header{Phase: operation.PhaseCompleted}, Images: 4, ImagesDone: 4, BlobsSkipped: 9})},
			wantCompleted: true, wantDone: 4, wantTotal: 4, wantDesc: "0 blobs sent",
		},
		{
			name:          "per-tag errors fail the operation with the tags named",
			ann:           []string{keys.ImageCopyID, backupUID, keys.ImageCopyStatus, status(failed)},
			wantCompleted: true, wantDone: 3, wantTotal: 3,
			wantErr:  "image copy of ImageStream app/web failed: 1 of 3 images not copied; tag gone (" + imageDigest + "): manifest unknown",
			wantDesc: "Failed 3/3 images: 0 blobs sent (0 B), 0 already in the target",
		},
		{
			name:          "cancelled",
			ann:           []string{keys.ImageCopyID, backupUID, keys.ImageCopyStatus, status(operation.ImageCopyStatus{Header: operation.Header{Phase: operation.PhaseCancelled}})},
			wantCompleted: true, wantErr: "image copy of ImageStream app/web was cancelled", wantDesc: "Cancelled 0/0 images",
		},
		{
			name: "replaced by a newer request", ann: []string{keys.ImageCopyID, "newer"},
			wantCompleted: true, wantErr: `image copy ` + backupUID + ` was replaced by image copy "newer"`,
		},
		{
			name: "malformed status", ann: []string{keys.ImageCopyID, backupUID, keys.ImageCopyStatus, "{oops"},
			wantCompleted: true, wantErr: keys.ImageCopyStatus,
		},
		{name: "stream deleted", noStream: true, wantCompleted: true, wantErr: "ImageStream app/web was deleted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var kubeObjs []runtimeObject
			if !tc.noLease {
				kubeObjs = append(kubeObjs, installedSidecar()...)
			}
			opts := []testutil.Option{testutil.OpenShift(), testutil.WithObjects(kubeObjs...)}
			if !tc.noStream {
				opts = append(opts, testutil.WithDynamicObjects(localStream(tc.ann...)))
			}
			cluster := testutil.NewCluster(opts...)
			log, _ := testutil.NewLogger()
			a := NewImageStreamAction(log, cluster.Clients, configOf(t, nil))
			p, err := a.Progress(op, migrationBackup("stage"))
			require.NoError(t, err, "Progress must report through OperationProgress, never an error")
			assertProgress(t, p, tc.wantCompleted, tc.wantErr, tc.wantDone, tc.wantTotal)
			assert.Equal(t, "Images", p.OperationUnits)
			if tc.wantDesc == "" {
				assert.Empty(t, p.Description, "a row without wantDesc expects no description")
			} else {
				assert.Contains(t, p.Description, tc.wantDesc)
			}
		})
	}
}

func TestImageStreamActionCancel(t *testing.T) {
	cluster := testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(localStream(keys.ImageCopyID, backupUID)))
	log, _ := testutil.NewLogger()
	a := NewImageStreamAction(log, cluster.Clients, configOf(t, nil))
	require.NoError(t, a.Cancel("app/web/"+backupUID, migrationBackup("stage")))
	live, err := cluster.Dynamic.Resource(imageStreams).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	req, err := operation.ParseImageCopyRequest("app", "web", live.GetAnnotations())
	require.NoError(t, err)
	assert.True(t, req.Cancel)
	assert.NoError(t, a.Cancel("app/gone/"+backupUID, migrationBackup("stage")), "cancelling a stream that is gone is not an error")
	_, err = a.Progress("nonsense", migrationBackup("stage"))
	assert.Error(t, err)
}
