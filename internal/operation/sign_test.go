package operation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ferry-dev/ferry/internal/keys"
)

func TestSignAndVerify(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	r := &TransferRequest{Request: Request{ID: "uid-1", TargetNamespace: "shop-prod", TargetName: "data", Backup: "final"}, Type: Final,
		StorageClass: ptr("fast"), Verify: ptr(false)}
	signed := func() map[string]string {
		ann := r.Annotations()
		sig, err := TransferKeys.Sign(key, "pvc-uid", "shop", "data", ann, now)
		require.NoError(t, err)
		ann[keys.TransferSignature] = sig
		return ann
	}
	issued, err := TransferKeys.Verify(key, "pvc-uid", "shop", "data", signed())
	require.NoError(t, err)
	assert.Equal(t, now.Unix(), issued.Unix())

	// What a tenant who may edit the PVC can do to a signed request, and what it does not buy.
	tests := []struct {
		name    string
		change  func(ann map[string]string)
		uid     string
		ns, pvc string
		key     []byte
		want    string
	}{
		{name: "another target", change: func(a map[string]string) { a[keys.TransferTarget] = "victim/db" }, want: "does not match"},
		{name: "another type", change: func(a map[string]string) { a[keys.TransferType] = "stage" }, want: "does not match"},
		{name: "an added overwrite", change: func(a map[string]string) { a[keys.TransferOverwrite] = "true" }, want: "does not match"},
		{name: "a removed storage class", change: func(a map[string]string) { delete(a, keys.TransferStorageClass) }, want: "does not match"},
		{name: "a new request ID", change: func(a map[string]string) { a[keys.TransferID] = "uid-2" }, want: "does not match"},
		{name: "copied to another PVC", pvc: "junk", want: "does not match"},
		{name: "copied to a PVC of the same name that was recreated", uid: "other-uid", want: "does not match"},
		{name: "copied to another namespace", ns: "mallory", want: "does not match"},
		{name: "signed with another key", key: []byte("fedcba9876543210fedcba9876543210"), want: "does not match"},
		{name: "no key", key: []byte{}, want: "key is missing"},
		{name: "no signature", change: func(a map[string]string) { delete(a, keys.TransferSignature) }, want: "not signed"},
		{name: "garbage signature", change: func(a map[string]string) { a[keys.TransferSignature] = "trust me" }, want: "not a ferry request signature"},
		{name: "other scheme", change: func(a map[string]string) { a[keys.TransferSignature] = "v0.1.AAAA" }, want: "not a ferry request signature"},
		{name: "bad time", change: func(a map[string]string) { a[keys.TransferSignature] = "v1.soon.AAAA" }, want: "not a ferry request signature"},
		{name: "bad MAC encoding", change: func(a map[string]string) { a[keys.TransferSignature] = "v1.1.!!!" }, want: "not a ferry request signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ann := signed()
			if tc.change != nil {
				tc.change(ann)
			}
			uid, ns, pvc, k := "pvc-uid", "shop", "data", key
			if tc.uid != "" {
				uid = tc.uid
			}
			if tc.ns != "" {
				ns = tc.ns
			}
			if tc.pvc != "" {
				pvc = tc.pvc
			}
			if tc.key != nil {
				k = tc.key
			}
			_, err := TransferKeys.Verify(k, types.UID(uid), ns, pvc, ann)
			assert.ErrorContains(t, err, tc.want)
		})
	}

	// Keys that do not shape the transfer may change: a cancel, the sidecar's status.
	ann := signed()
	ann[keys.TransferCancel] = "uid-1"
	ann[keys.TransferStatus] = `{"id":"uid-1","phase":"Transferring"}`
	_, err = TransferKeys.Verify(key, "pvc-uid", "shop", "data", ann)
	assert.NoError(t, err)

	// An image copy's signature is not a transfer's.
	ic := &ImageCopyRequest{Request{ID: "uid-1", TargetNamespace: "shop", TargetName: "data"}}
	icAnn := ic.Annotations()
	sig, err := ImageCopyKeys.Sign(key, "pvc-uid", "shop", "data", icAnn, now)
	require.NoError(t, err)
	tr := (&TransferRequest{Request: ic.Request, Type: Stage}).Annotations()
	tr[keys.TransferSignature] = sig
	_, err = TransferKeys.Verify(key, "pvc-uid", "shop", "data", tr)
	assert.ErrorContains(t, err, "does not match")

	_, err = TransferKeys.Sign(nil, "u", "a", "b", ann, now)
	assert.ErrorContains(t, err, "key is missing")
	k1, err := NewRequestKey()
	require.NoError(t, err)
	k2, _ := NewRequestKey()
	assert.Len(t, k1, 32)
	assert.NotEqual(t, k1, k2)
}
