package podrunner

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func podWithMounts(mounts ...corev1.VolumeMount) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{
		Volumes:    []corev1.Volume{{Name: "data"}, {Name: "certs"}},
		Containers: []corev1.Container{{Name: "rsync", VolumeMounts: mounts}},
	}}
}

func TestValidateMounts(t *testing.T) {
	tests := []struct {
		name       string
		mount      corev1.VolumeMount
		wantReason string
	}{
		{"under /mnt", corev1.VolumeMount{Name: "data", MountPath: "/mnt/data"}, ""},
		{"nested under /mnt", corev1.VolumeMount{Name: "certs", MountPath: "/mnt/x/certs", SubPath: "tls"}, ""},
		{"elsewhere", corev1.VolumeMount{Name: "data", MountPath: "/data"}, "UnsupportedMountPath"},
		{"/mnt itself", corev1.VolumeMount{Name: "data", MountPath: "/mnt"}, "UnsupportedMountPath"},
		{"climbing out of /mnt", corev1.VolumeMount{Name: "data", MountPath: "/mnt/../etc"}, "UnsupportedMountPath"},
		{"relative", corev1.VolumeMount{Name: "data", MountPath: "mnt/data"}, "UnsupportedMountPath"},
		{"unknown volume", corev1.VolumeMount{Name: "nope", MountPath: "/mnt/nope"}, "UnknownVolume"},
		{"subPath out of the volume", corev1.VolumeMount{Name: "data", MountPath: "/mnt/d", SubPath: "../../etc"}, "BadSubPath"},
		{"subPathExpr", corev1.VolumeMount{Name: "data", MountPath: "/mnt/d", SubPathExpr: "$(POD_NAME)"}, "UnsupportedSubPathExpr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateMounts(podWithMounts(tt.mount))
			if tt.wantReason == "" {
				assert.NoError(t, err)
				return
			}
			var perm *permanentError
			require.True(t, errors.As(err, &perm), "want a permanent error, got %v", err)
			assert.Equal(t, tt.wantReason, perm.reason)
			assert.Contains(t, err.Error(), tt.mount.Name, "the message names the volume")
		})
	}
}

func TestWriteVolumeFiles(t *testing.T) {
	data := map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY"), "ca.crt": []byte("CA")}
	t.Run("every key with the default mode", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "v")
		require.NoError(t, writeVolumeFiles(dir, data, nil, ptr.To[int32](0o400), nil, "secret certs"))
		for k, v := range data {
			got, err := os.ReadFile(filepath.Join(dir, k))
			require.NoError(t, err)
			assert.Equal(t, v, got)
			st, err := os.Stat(filepath.Join(dir, k))
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o400), st.Mode().Perm())
		}
	})
	t.Run("items at their paths and modes", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "v")
		items := []corev1.KeyToPath{{Key: "tls.key", Path: "private/key.pem", Mode: ptr.To[int32](0o600)}, {Key: "ca.crt", Path: "ca.pem"}}
		require.NoError(t, writeVolumeFiles(dir, data, items, nil, nil, "secret certs"))
		st, err := os.Stat(filepath.Join(dir, "private/key.pem"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		st, err = os.Stat(filepath.Join(dir, "ca.pem"))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
		_, err = os.Stat(filepath.Join(dir, "tls.crt"))
		assert.True(t, os.IsNotExist(err), "keys not listed are not written")
	})
	t.Run("missing key", func(t *testing.T) {
		err := writeVolumeFiles(t.TempDir(), data, []corev1.KeyToPath{{Key: "nope", Path: "x"}}, nil, nil, "secret certs")
		require.Error(t, err)
		assert.Contains(t, err.Error(), `secret certs has no key "nope"`)
	})
	t.Run("missing key of an optional source", func(t *testing.T) {
		assert.NoError(t, writeVolumeFiles(t.TempDir(), data, []corev1.KeyToPath{{Key: "nope", Path: "x"}}, nil, ptr.To(true), "secret certs"))
	})
	t.Run("item path leaving the volume", func(t *testing.T) {
		err := writeVolumeFiles(t.TempDir(), data, []corev1.KeyToPath{{Key: "ca.crt", Path: "../ca"}}, nil, nil, "secret certs")
		assert.ErrorContains(t, err, "leaves the volume")
	})
}

func TestContainerMounts(t *testing.T) {
	vol := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(vol, "file"), []byte("x"), 0o644))
	c := &corev1.Container{Name: "c", VolumeMounts: []corev1.VolumeMount{
		{Name: "data", MountPath: "/mnt/data/"},
		{Name: "data", MountPath: "/mnt/file", SubPath: "file", ReadOnly: true},
		{Name: "data", MountPath: "/mnt/new", SubPath: "new/dir"},
	}}
	got, err := containerMounts(c, map[string]string{"data": vol})
	require.NoError(t, err)
	assert.Equal(t, []mount{
		{source: vol, target: "/mnt/data"},
		{source: filepath.Join(vol, "file"), target: "/mnt/file", readOnly: true, file: true},
		{source: filepath.Join(vol, "new/dir"), target: "/mnt/new"},
	}, got)
	assert.DirExists(t, filepath.Join(vol, "new/dir"), "a missing subPath is created, as kubelet does")
}
