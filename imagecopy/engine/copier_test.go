package engine

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/imagecopy/registrytest"
)

// These tests copy between real registries (Debian's docker-registry) on loopback.

func startRegistry(t *testing.T, opts registrytest.Options) *registrytest.Registry {
	t.Helper()
	r, err := registrytest.Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry %s output:\n%s", r.Host, r.Log())
		}
		_ = r.Close()
	})
	return r
}

// plainAccess reaches an HTTP registry: without the explicit insecure opt-in ferry refuses.
func plainAccess(r *registrytest.Registry) imagecopy.Access {
	return imagecopy.Access{Host: r.Host, Insecure: true, CredentialsFrom: "none"}
}

func tlsAccess(r *registrytest.Registry, user, password string) imagecopy.Access {
	from := "none"
	if user != "" {
		from = "test credentials"
	}
	return imagecopy.Access{Host: r.Host, RootCAs: r.RootCAs(), Username: user, Password: password, CredentialsFrom: from}
}

func newCopier(t *testing.T) *Copier {
	t.Helper()
	c, err := New(Options{Log: testr.New(t), Retry: wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 6}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestCopyMultiLayerImageThenNothingToSend(t *testing.T) {
	src := startRegistry(t, registrytest.Options{})
	dst := startRegistry(t, registrytest.Options{TLS: true})
	const layers, size = 4, 256 << 10
	digest, err := src.PushImage("app/web:v1", layers, size)
	require.NoError(t, err)
	c := newCopier(t)
	ctx := context.Background()

	stats, err := c.Copy(ctx, src.Host+"/app/web@"+digest, plainAccess(src), dst.Host+"/app-new/web:v1", tlsAccess(dst, "", ""))
	require.NoError(t, err)
	assert.Equal(t, digest, stats.Digest, "the digest is preserved")
	assert.Equal(t, layers+1, stats.BlobsSent, "every layer and the config are uploaded")
	assert.Zero(t, stats.BlobsSkipped)
	assert.Greater(t, stats.BytesSent, int64(layers*size), "at least the layer bytes went over the wire")
	got, err := dst.Digest("app-new/web:v1")
	require.NoError(t, err)
	assert.Equal(t, digest, got, "the target tag resolves to the source digest")
	srcManifest, err := src.Manifest("app/web@" + digest)
	require.NoError(t, err)
	dstManifest, err := dst.Manifest("app-new/web:v1")
	require.NoError(t, err)
	assert.Equal(t, string(srcManifest), string(dstManifest), "the manifest is byte-for-byte the same")

	again, err := c.Copy(ctx, src.Host+"/app/web@"+digest, plainAccess(src), dst.Host+"/app-new/web:v1", tlsAccess(dst, "", ""))
	require.NoError(t, err)
	assert.Zero(t, again.BlobsSent, "a second copy of an unchanged image sends no blob")
	assert.Equal(t, layers+1, again.BlobsSkipped)
	assert.Zero(t, again.BytesSent)
	assert.Equal(t, digest, again.Digest)
}

func TestCopyManifestListStaysAList(t *testing.T) {
	src := startRegistry(t, registrytest.Options{})
	dst := startRegistry(t, registrytest.Options{})
	const images, layers = 3, 2
	digest, err := src.PushIndex("app/multi:v1", images, layers, 64<<10)
	require.NoError(t, err)
	c := newCopier(t)
	ctx := context.Background()

	// History items are pushed by digest: the destination reference carries no tag at all.
	stats, err := c.Copy(ctx, src.Host+"/app/multi@"+digest, plainAccess(src), dst.Host+"/app/multi@"+digest, plainAccess(dst))
	require.NoError(t, err)
	assert.Equal(t, digest, stats.Digest)
	assert.Equal(t, images*(layers+1), stats.BlobsSent, "every instance's layers and config")

	raw, err := dst.Manifest("app/multi@" + digest)
	require.NoError(t, err)
	var list struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(raw, &list))
	assert.Len(t, list.Manifests, images, "the list keeps every instance")
	for _, m := range list.Manifests {
		_, err := dst.Manifest("app/multi@" + m.Digest)
		assert.NoError(t, err, "instance %s is in the target", m.Digest)
	}
	_, err = dst.Digest("app/multi:latest")
	assert.Error(t, err, "a copy by digest creates no tag, least of all :latest")

	again, err := c.Copy(ctx, src.Host+"/app/multi@"+digest, plainAccess(src), dst.Host+"/app/multi@"+digest, plainAccess(dst))
	require.NoError(t, err)
	assert.Zero(t, again.BlobsSent)
	assert.Equal(t, images*(layers+1), again.BlobsSkipped)
}

func TestCopyErrors(t *testing.T) {
	src := startRegistry(t, registrytest.Options{})
	authed := startRegistry(t, registrytest.Options{TLS: true, Users: map[string]string{"pusher": "right-password"}})
	readOnly := startRegistry(t, registrytest.Options{ReadOnly: true})
	digest, err := src.PushImage("app/web:v1", 2, 32<<10)
	require.NoError(t, err)
	const missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
	c := newCopier(t)
	ctx := context.Background()

	tests := []struct {
		name    string
		src     string
		dst     string
		to      imagecopy.Access
		wantErr []string
	}{
		{
			name: "wrong password: denied, with where the credentials came from",
			src:  src.Host + "/app/web@" + digest, dst: authed.Host + "/app/web:v1",
			to:      tlsAccess(authed, "pusher", "wrong-password"),
			wantErr: []string{"copying " + src.Host + "/app/web@" + digest + " to " + authed.Host + "/app/web:v1", "access denied", "test credentials"},
		},
		{
			name: "no credentials for a registry that wants them",
			src:  src.Host + "/app/web@" + digest, dst: authed.Host + "/app/web:v1",
			to:      tlsAccess(authed, "", ""),
			wantErr: []string{"access denied", authed.Host + " used none"},
		},
		{
			name: "a read-only registry refuses the push",
			src:  src.Host + "/app/web@" + digest, dst: readOnly.Host + "/app/web:v1",
			to:      plainAccess(readOnly),
			wantErr: []string{"to " + readOnly.Host + "/app/web:v1", "refuses writes"},
		},
		{
			name: "a missing source image",
			src:  src.Host + "/app/web@" + missing, dst: authed.Host + "/app/web:v1",
			to:      tlsAccess(authed, "pusher", "right-password"),
			wantErr: []string{"copying " + src.Host + "/app/web@" + missing, "manifest unknown", "not found"},
		},
		{
			name: "TLS is verified: a registry whose CA is not trusted is refused",
			src:  src.Host + "/app/web@" + digest, dst: authed.Host + "/app/web:v1",
			to:      imagecopy.Access{Host: authed.Host, Username: "pusher", Password: "right-password", CredentialsFrom: "test"},
			wantErr: []string{"certificate", "registryCASecret"},
		},
		{
			name: "plain HTTP without the insecure opt-in is refused",
			src:  src.Host + "/app/web@" + digest, dst: readOnly.Host + "/app/web:v1",
			to:      imagecopy.Access{Host: readOnly.Host, CredentialsFrom: "none"},
			wantErr: []string{"to " + readOnly.Host, "registryInsecure=true"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stats, err := c.Copy(ctx, tt.src, plainAccess(src), tt.dst, tt.to)
			require.Error(t, err)
			t.Log(err)
			for _, s := range tt.wantErr {
				assert.Contains(t, err.Error(), s)
			}
			assert.NotContains(t, err.Error(), "right-password")
			assert.NotContains(t, err.Error(), "wrong-password")
			assert.Zero(t, stats.Retries, "a permanent error is not retried")
			assert.Zero(t, stats.BlobsSent)
		})
	}

	// The same copy with the right password works: the failures above were about access only.
	stats, err := c.Copy(ctx, src.Host+"/app/web@"+digest, plainAccess(src), authed.Host+"/app/web:v1", tlsAccess(authed, "pusher", "right-password"))
	require.NoError(t, err)
	assert.Equal(t, digest, stats.Digest)
}

func TestCopyRetriesWhileTheTargetIsDown(t *testing.T) {
	src := startRegistry(t, registrytest.Options{})
	dst := startRegistry(t, registrytest.Options{})
	digest, err := src.PushImage("app/web:v1", 2, 32<<10)
	require.NoError(t, err)
	c := newCopier(t)

	dst.Stop()
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(700 * time.Millisecond)
		restarted <- dst.Reset(registrytest.Options{})
	}()
	stats, err := c.Copy(context.Background(), src.Host+"/app/web@"+digest, plainAccess(src), dst.Host+"/app/web:v1", plainAccess(dst))
	require.NoError(t, <-restarted)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, stats.Retries, 1, "the refused connections were retried")
	got, err := dst.Digest("app/web:v1")
	require.NoError(t, err)
	assert.Equal(t, digest, got)
}

func TestCopyStopsWhenCancelled(t *testing.T) {
	src := startRegistry(t, registrytest.Options{})
	dst := startRegistry(t, registrytest.Options{})
	digest, err := src.PushImage("app/web:v1", 1, 1024)
	require.NoError(t, err)
	dst.Stop() // every attempt would be retried…
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = newCopier(t).Copy(ctx, src.Host+"/app/web@"+digest, plainAccess(src), dst.Host+"/app/web:v1", plainAccess(dst))
	require.Error(t, err)
	assert.Less(t, time.Since(start), 5*time.Second, "…but cancelling the context ends the backoff") // a bound, not a speed claim
}
