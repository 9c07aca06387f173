package images

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/imagecopy/engine"
	"github.com/ferry-dev/ferry/imagecopy/registrytest"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
	"github.com/ferry-dev/ferry/sidecar"
)

// The clusters here are fakes (client-go's); the registries and the copies are real.

const missingDigest = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

type fixture struct {
	src, dst         *registrytest.Registry
	source, target   *testutil.Cluster
	r                *Reconciler
	v1Old, v1, multi string
}

func startRegistry(t *testing.T) *registrytest.Registry {
	t.Helper()
	r, err := registrytest.Start(registrytest.Options{})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry %s output:\n%s", r.Host, r.Log())
		}
		_ = r.Close()
	})
	return r
}

// newFixture pushes images into a real source registry and describes them in a fake source
// cluster's image stream app/web, as OpenShift would after `docker push`:
//   - v1: pushed twice (history: new, old);
//   - latest: a spec tag following v1 (same image);
//   - multi: a manifest list;
//   - ext: an image in an external registry;
//   - gone: a history item whose image was pruned from the registry.
func newFixture(t *testing.T, ferryConfig map[string]string, request map[string]string) *fixture {
	t.Helper()
	f := &fixture{src: startRegistry(t), dst: startRegistry(t)}
	var err error
	f.v1Old, err = f.src.PushImage("app/web:v1", 2, 16<<10)
	require.NoError(t, err)
	f.v1, err = f.src.PushImage("app/web:v1", 3, 16<<10)
	require.NoError(t, err)
	f.multi, err = f.src.PushIndex("app/web:multi", 2, 1, 8<<10)
	require.NoError(t, err)

	repo := f.src.Host + "/app/web"
	item := func(d string) map[string]any {
		return map[string]any{"dockerImageReference": repo + "@" + d, "image": d, "created": "2026-11-20T10:00:00Z", "generation": int64(1)}
	}
	is := testutil.Object("image.openshift.io/v1", "ImageStream", "app", "web", map[string]any{
		"spec.tags":                    []any{map[string]any{"name": "latest", "from": map[string]any{"kind": "ImageStreamTag", "name": "web:v1"}}},
		"status.dockerImageRepository": repo,
		"status.tags": []any{
			map[string]any{"tag": "v1", "items": []any{item(f.v1), item(f.v1Old)}},
			map[string]any{"tag": "latest", "items": []any{item(f.v1)}},
			map[string]any{"tag": "multi", "items": []any{item(f.multi)}},
			map[string]any{"tag": "ext", "items": []any{map[string]any{"dockerImageReference": "quay.io/org/tool@" + missingDigest, "image": missingDigest}}},
			map[string]any{"tag": "gone", "items": []any{item(missingDigest)}},
		},
	})
	is.SetUID("stream-uid")
	is.SetAnnotations(signed(t, is, request))
	imagesConfig := testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
		"status.internalRegistryHostname": f.src.Host,
	})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: config.ConfigMapName}, Data: ferryConfig}
	key := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: operation.RequestKeySecret},
		Data: map[string][]byte{operation.RequestKeyField: requestKey}}
	appNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app", Annotations: map[string]string{
		keys.NamespaceUIDRange: "1000660000/10000", keys.NamespaceMCS: "s0:c26,c5", "unrelated": "x",
	}}}
	f.source = testutil.NewCluster(testutil.OpenShift(), testutil.WithObjects(cm, key, appNS), testutil.TokensFor("velero/ferry-registry"),
		testutil.WithDynamicObjects(is, imagesConfig, backup("s1", "uid-1"), backup("s2", "uid-2")))
	f.target = testutil.NewCluster(testutil.OpenShift(), testutil.TokensFor("ferry-system/ferry-registry"), testutil.WithDynamicObjects(testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
		"status.internalRegistryHostname":  "image-registry.openshift-image-registry.svc:5000",
		"status.externalRegistryHostnames": []any{f.dst.Host},
	})))
	f.target.Clients.Config = &rest.Config{BearerToken: "target-token"}

	copier, err := engine.New(engine.Options{Log: testr.New(t), Retry: wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Steps: 3}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = copier.Close() })
	f.r = &Reconciler{
		Env: &sidecar.Env{
			Source:   f.source.Clients,
			Targets:  sidecar.FixedTarget{Clients: f.target.Clients},
			Recorder: record.NewFakeRecorder(100),
			Clock:    clocktesting.NewFakePassiveClock(time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)),
		},
		Copier:   copier,
		Progress: sidecar.Poll,
	}
	return f
}

func (f *fixture) reconcile(t *testing.T) ctrl.Result {
	t.Helper()
	ctx := logr.NewContext(context.Background(), testr.New(t))
	res, err := f.r.Reconcile(ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "app", Name: "web"}})
	require.NoError(t, err)
	return res
}

func (f *fixture) status(t *testing.T) *operation.ImageCopyStatus {
	t.Helper()
	u, err := f.source.Dynamic.Resource(imageStreams).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	st, err := operation.ParseImageCopyStatus(u.GetAnnotations())
	require.NoError(t, err)
	require.NotNil(t, st, "the sidecar wrote a status")
	return st
}

// request writes a new signed request, as the backup action does.
func (f *fixture) request(t *testing.T, ann map[string]string) {
	t.Helper()
	streams := f.source.Dynamic.Resource(imageStreams).Namespace("app")
	u, err := streams.Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	all := u.GetAnnotations()
	for k, v := range ann {
		all[k] = v
	}
	u.SetAnnotations(signed(t, u, all))
	_, err = streams.Update(context.Background(), u, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// requestKey is the key Velero's plugins sign requests with in these tests.
var requestKey = []byte("0123456789abcdef0123456789abcdef")

// signed returns ann with the request in it signed for the stream u (unchanged without one).
func signed(t *testing.T, u *unstructured.Unstructured, ann map[string]string) map[string]string {
	t.Helper()
	if _, ok := ann[keys.ImageCopyID]; !ok {
		return ann
	}
	sig, err := operation.ImageCopyKeys.Sign(requestKey, u.GetUID(), u.GetNamespace(), u.GetName(), ann, time.Date(2026, 11, 21, 11, 0, 0, 0, time.UTC))
	require.NoError(t, err)
	ann[keys.ImageCopySignature] = sig
	return ann
}

// annotate adds annotations to the source stream, as a user or the backup action would.
func (f *fixture) annotate(ann map[string]string) error {
	streams := f.source.Dynamic.Resource(imageStreams).Namespace("app")
	u, err := streams.Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		return err
	}
	all := u.GetAnnotations()
	for k, v := range ann {
		all[k] = v
	}
	u.SetAnnotations(all)
	_, err = streams.Update(context.Background(), u, metav1.UpdateOptions{})
	return err
}

func TestReconcileCopiesTheStreamThenSendsNothing(t *testing.T) {
	f := newFixture(t, map[string]string{"registryInsecure": "true"},
		map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyTarget: "app-new/web", keys.ImageCopyBackup: "s1"})
	f.reconcile(t)

	st := f.status(t)
	assert.Equal(t, "uid-1", st.ID)
	assert.Equal(t, operation.PhaseFailed, st.Phase, "one image was missing in the source")
	assert.Equal(t, f.dst.Host+"/app-new/web", st.Target, "pushed to the target's external registry name, mapped namespace")
	assert.Equal(t, 4, st.Images, "v1, its older item, multi, and the missing one; latest and ext add nothing")
	assert.Equal(t, 4, st.ImagesDone)
	assert.Equal(t, 1, st.FailedImages)
	require.Len(t, st.Errors, 1)
	assert.Equal(t, "gone", st.Errors[0].Tag)
	assert.Contains(t, st.Errors[0].Error, "manifest unknown")
	assert.Equal(t, (2+1)+(3+1)+2*(1+1), st.BlobsSent, "layers and configs of both v1 images and both list instances")
	assert.Zero(t, st.BlobsSkipped)
	assert.Contains(t, st.Message, "1 of 4 images not copied; tag gone")
	assert.NotNil(t, st.Completed)

	for ref, want := range map[string]string{
		"app-new/web:v1": f.v1, "app-new/web@" + f.v1Old: f.v1Old, "app-new/web:multi": f.multi,
	} {
		got, err := f.dst.Digest(ref)
		if assert.NoError(t, err, ref) {
			assert.Equal(t, want, got, "%s keeps its digest", ref)
		}
	}
	for _, absent := range []string{"app-new/web:latest", "app-new/web:gone", "app-new/web:ext"} {
		_, err := f.dst.Digest(absent)
		assert.Error(t, err, "%s must not exist: references are not pushed, and never as an implied :latest", absent)
	}

	ns, err := f.target.Kube.CoreV1().Namespaces().Get(context.Background(), "app-new", metav1.GetOptions{})
	require.NoError(t, err, "the target namespace was created")
	assert.Equal(t, map[string]string{keys.NamespaceUIDRange: "1000660000/10000", keys.NamespaceMCS: "s0:c26,c5"}, ns.Annotations,
		"the UID range and SELinux labels travel; nothing else")
	created, err := f.target.Dynamic.Resource(imageStreams).Namespace("app-new").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err, "the target image stream was created before the push")
	assert.Equal(t, "uid-1", created.GetAnnotations()[keys.ImageCopyCreated])

	// A terminal status for the current ID is final.
	f.reconcile(t)
	assert.Equal(t, st, f.status(t))

	// The next stage: a new request ID; nothing changed, so no blob is sent.
	f.request(t, map[string]string{keys.ImageCopyID: "uid-2", keys.ImageCopyBackup: "s2"})
	f.reconcile(t)
	again := f.status(t)
	assert.Equal(t, "uid-2", again.ID)
	assert.Zero(t, again.BlobsSent, "an unchanged stream sends no blob")
	assert.Zero(t, again.BytesSent)
	assert.Equal(t, st.BlobsSent, again.BlobsSkipped, "every blob is found in the target")
}

func TestReconcileEndsRequestsItCannotServe(t *testing.T) {
	tests := []struct {
		name    string
		config  map[string]string
		request map[string]string
		phase   operation.Phase
		message []string
	}{
		{
			name:    "a cancelled request is not copied",
			config:  map[string]string{"registryInsecure": "true"},
			request: map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyCancel: "uid-1"},
			phase:   operation.PhaseCancelled,
			message: []string{"cancelled on request"},
		},
		{
			name:    "copies turned off in ferry-config",
			config:  map[string]string{"imageCopy": "false"},
			request: map[string]string{keys.ImageCopyID: "uid-1"},
			phase:   operation.PhaseFailed,
			message: []string{"imageCopy=false"},
		},
		{
			name:    "a malformed request names the key",
			config:  map[string]string{},
			request: map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyTarget: "nothing"},
			phase:   operation.PhaseFailed,
			message: []string{"ImageStream app/web", keys.ImageCopyTarget, "want namespace/name"},
		},
		{
			name:    "invalid ferry-config names the key",
			config:  map[string]string{"registryInsecure": "yes please"},
			request: map[string]string{keys.ImageCopyID: "uid-1"},
			phase:   operation.PhaseFailed,
			message: []string{`key "registryInsecure"`},
		},
		{
			name:    "a registry credentials Secret that does not exist",
			config:  map[string]string{"targetRegistrySecret": "nope"},
			request: map[string]string{keys.ImageCopyID: "uid-1"},
			phase:   operation.PhaseFailed,
			message: []string{"Secret velero/nope"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.config, tt.request)
			f.reconcile(t)
			st := f.status(t)
			assert.Equal(t, tt.phase, st.Phase)
			for _, m := range tt.message {
				assert.Contains(t, st.Message, m)
			}
			_, err := f.dst.Digest("app/web:v1")
			assert.Error(t, err, "nothing was pushed")
		})
	}
}

func TestReconcileLeavesStreamsWithoutARequestAlone(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.reconcile(t)
	u, err := f.source.Dynamic.Resource(imageStreams).Namespace("app").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, u.GetAnnotations(), keys.ImageCopyStatus)
}

func TestRequestChangedPredicate(t *testing.T) {
	stream := func(ann map[string]string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAnnotations(ann)
		return u
	}
	req := map[string]string{keys.ImageCopyID: "uid-1"}
	withStatus := map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyStatus: `{"id":"uid-1"}`}
	assert.False(t, requestChanged.Update(updateEvent(stream(req), stream(withStatus))), "the sidecar's own status write")
	assert.True(t, requestChanged.Update(updateEvent(stream(withStatus), stream(map[string]string{keys.ImageCopyID: "uid-2"}))), "a new request")
	assert.True(t, requestChanged.Update(updateEvent(stream(req), stream(map[string]string{keys.ImageCopyID: "uid-1", keys.ImageCopyCancel: "uid-1"}))), "a cancel")
	assert.False(t, requestChanged.Create(createEvent(stream(nil))), "a stream without a request")
	assert.True(t, requestChanged.Create(createEvent(stream(withStatus))), "at start, unfinished copies resume")
}

func TestReconcileHonoursACancelDuringTheCopy(t *testing.T) {
	f := newFixture(t, map[string]string{"registryInsecure": "true"}, map[string]string{keys.ImageCopyID: "uid-1"})
	// The target registry is down: the copy keeps retrying until something stops it.
	f.dst.Stop()
	patient, err := engine.New(engine.Options{Retry: wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1, Steps: 1000}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = patient.Close() })
	f.r.Copier = patient
	f.r.Progress = 50 * time.Millisecond

	cancelled := make(chan error, 1)
	go func() {
		time.Sleep(400 * time.Millisecond)
		cancelled <- f.annotate(map[string]string{keys.ImageCopyCancel: "uid-1"})
	}()
	f.reconcile(t)
	require.NoError(t, <-cancelled)
	st := f.status(t)
	assert.Equal(t, operation.PhaseCancelled, st.Phase)
	assert.Zero(t, st.FailedImages, "a cancelled copy reports no image errors")
}

// backup is a Velero Backup that asked for copies (its UID is their request ID).
func backup(name, uid string) *unstructured.Unstructured {
	b := testutil.Object("velero.io/v1", "Backup", testutil.VeleroNamespace, name, nil)
	b.SetUID(types.UID(uid))
	return b
}

// TestDeletingTheBackupCancelsTheCopy: a copy whose Backup was deleted, or whose deletion was
// asked for, is cancelled; nothing is pushed.
func TestDeletingTheBackupCancelsTheCopy(t *testing.T) {
	for name, request := range map[string]map[string]string{
		"deleted":              {keys.ImageCopyID: "uid-9", keys.ImageCopyBackup: "gone"},
		"made again":           {keys.ImageCopyID: "uid-9", keys.ImageCopyBackup: "s1"},
		"velero backup delete": {keys.ImageCopyID: "uid-2", keys.ImageCopyBackup: "s2"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, map[string]string{"registryInsecure": "true"}, request)
			dbr := testutil.Object("velero.io/v1", "DeleteBackupRequest", testutil.VeleroNamespace, "s2-delete", map[string]any{"spec.backupName": "s2"})
			_, err := f.source.Dynamic.Resource(deleteBackupRequestsGVR).Namespace(testutil.VeleroNamespace).Create(context.Background(), dbr, metav1.CreateOptions{})
			require.NoError(t, err)
			f.reconcile(t)
			st := f.status(t)
			assert.Equal(t, operation.PhaseCancelled, st.Phase)
			assert.Contains(t, st.Message, "cancelled: ")
			_, err = f.dst.Digest("app/web:v1")
			assert.Error(t, err, "nothing was pushed")
		})
	}
}

var deleteBackupRequestsGVR = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "deletebackuprequests"}
