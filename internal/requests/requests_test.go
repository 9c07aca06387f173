package requests

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func keySecret() *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: operation.RequestKeySecret},
		Data: map[string][]byte{operation.RequestKeyField: key}}
}

func pvc(ann ...string) *corev1.PersistentVolumeClaim {
	a := map[string]string{}
	for i := 0; i+1 < len(ann); i += 2 {
		a[ann[i]] = ann[i+1]
	}
	sc := "standard"
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "data", UID: "pvc-uid", Annotations: a},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &sc, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}}
}

func ptr[T any](v T) *T { return &v }

func TestRequestTransfer(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		pvc     *corev1.PersistentVolumeClaim
		config  map[string]string
		manual  Manual
		noKey   bool
		want    map[string]string // "" value: absent
		wantErr string
	}{
		{name: "defaults: a stage into the same namespace and name, ferry-config's choices", pvc: pvc(), config: map[string]string{"storageClassMapping": "standard=fast"},
			want: map[string]string{keys.TransferID: "manual-1796202000", keys.TransferType: "stage", keys.TransferTarget: "shop/data", keys.TransferStorageClass: "fast",
				keys.TransferAccessModes: "ReadWriteOnce", keys.TransferVerify: "false", keys.TransferOverwrite: ""}},
		{name: "namespaceMapping from ferry-config", pvc: pvc(), config: map[string]string{"namespaceMapping": "shop=shop-prod"},
			want: map[string]string{keys.TransferTarget: "shop-prod/data"}},
		{name: "the admin's choices win", pvc: pvc(), config: map[string]string{"namespaceMapping": "shop=shop-prod", "allowOverwrite": "true"},
			manual: Manual{ID: "cutover", Type: operation.Final, Target: "other/db", StorageClass: ptr("gold"), AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, Verify: ptr(true), Overwrite: ptr(false)},
			want: map[string]string{keys.TransferID: "cutover", keys.TransferType: "final", keys.TransferTarget: "other/db", keys.TransferStorageClass: "gold",
				keys.TransferAccessModes: "ReadWriteMany", keys.TransferVerify: "true", keys.TransferOverwrite: ""}},
		{name: "allowOverwrite from ferry-config", pvc: pvc(), config: map[string]string{"allowOverwrite": "true"}, want: map[string]string{keys.TransferOverwrite: "true"}},
		{name: "ferry-config verify: a final verifies", pvc: pvc(), config: map[string]string{"verify": "true"}, manual: Manual{Type: operation.Final},
			want: map[string]string{keys.TransferType: "final", keys.TransferVerify: "true"}},
		{name: "ferry-config verify: a stage does not, unless asked", pvc: pvc(), config: map[string]string{"verify": "true"},
			want: map[string]string{keys.TransferType: "stage", keys.TransferVerify: "false"}},
		{name: "an admin asks a stage to verify", pvc: pvc(), manual: Manual{Verify: ptr(true)},
			want: map[string]string{keys.TransferType: "stage", keys.TransferVerify: "true"}},
		{name: "an older request's keys and cancel go", pvc: pvc(keys.TransferID, "old", keys.TransferCancel, "old", keys.TransferOverwrite, "true", keys.TransferStorageClass, "x"),
			manual: Manual{StorageClass: nil}, want: map[string]string{keys.TransferCancel: "", keys.TransferOverwrite: ""}},
		{name: "a stage while a final runs is refused", pvc: pvc(keys.TransferID, "f", keys.TransferType, "final", keys.TransferStatus, `{"id":"f","phase":"Quiescing"}`),
			wantErr: "a final transfer (request f) is under way"},
		{name: "a bad target", pvc: pvc(), manual: Manual{Target: "nope"}, wantErr: `--target "nope": want namespace/name`},
		{name: "a target the sidecar would not parse", pvc: pvc(), manual: Manual{Target: "Bad_NS/data"}, wantErr: "not a valid namespace name"},
		{name: "no signing key: the sidecar is not installed", pvc: pvc(), noKey: true, wantErr: "ferry-request-key, the key that signs ferry's requests, does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{tc.pvc, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testutil.VeleroNamespace, Name: config.ConfigMapName}, Data: tc.config}}
			if !tc.noKey {
				objs = append(objs, keySecret())
			}
			c := testutil.NewCluster(testutil.WithObjects(objs...))
			tc.manual.Now = now
			if tc.manual.Type == "" {
				tc.manual.Type = operation.Stage
			}
			_, err := RequestTransfer(context.Background(), c.Clients, "shop", "data", tc.manual)
			live, getErr := c.Kube.CoreV1().PersistentVolumeClaims("shop").Get(context.Background(), "data", metav1.GetOptions{})
			require.NoError(t, getErr)
			if tc.wantErr != "" {
				assert.ErrorContains(t, err, tc.wantErr)
				assert.Equal(t, tc.pvc.Annotations, live.Annotations, "nothing written")
				return
			}
			require.NoError(t, err)
			for k, v := range tc.want {
				if v == "" {
					assert.NotContains(t, live.Annotations, k)
				} else {
					assert.Equal(t, v, live.Annotations[k], k)
				}
			}
			issued, err := operation.TransferKeys.Verify(key, "pvc-uid", "shop", "data", live.Annotations)
			require.NoError(t, err, "the data mover accepts it")
			assert.Equal(t, now.Unix(), issued.Unix())
		})
	}
}

func TestRequestImageCopy(t *testing.T) {
	is := testutil.Object("image.openshift.io/v1", "ImageStream", "shop", "web", nil)
	is.SetUID("is-uid")
	c := testutil.NewCluster(testutil.OpenShift(), testutil.WithObjects(keySecret()), testutil.WithDynamicObjects(is))
	req, err := RequestImageCopy(context.Background(), c.Clients, "shop", "web", Manual{ID: "copy-1", Target: "shop-prod/web"})
	require.NoError(t, err)
	assert.Equal(t, "shop-prod/web", req.Target())
	live, err := c.Dynamic.Resource(imageStreams).Namespace("shop").Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "copy-1", live.GetAnnotations()[keys.ImageCopyID])
	_, err = operation.ImageCopyKeys.Verify(key, "is-uid", "shop", "web", live.GetAnnotations())
	assert.NoError(t, err, "the data mover accepts it")
}
