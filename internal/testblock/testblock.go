// Package testblock gives tests of block volumes loop devices over sparse files, detached when
// the test ends. Attaching one needs root (CI runs as root): a test that cannot fails.
package testblock

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Device is a loop device over a sparse backing file.
type Device struct {
	Path, Backing string
	Size          int64
}

// New makes dir/name.img, a sparse file of size bytes, and attaches it to a loop device, which
// the test's cleanup detaches (also when it fails).
func New(t testing.TB, dir, name string, size int64) Device {
	t.Helper()
	require.Equal(t, 0, os.Geteuid(), "block volume tests attach loop devices and must run as root")
	backing := filepath.Join(dir, name+".img")
	require.NoError(t, os.WriteFile(backing, nil, 0o600))
	require.NoError(t, os.Truncate(backing, size))
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	require.NoError(t, err, "losetup: %s", out)
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return Device{Path: dev, Backing: backing, Size: size}
}

// Allocated is the space the backing file takes on disk.
func (d Device) Allocated(t testing.TB) int64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(d.Backing, &st))
	return st.Blocks * 512
}

// Write writes p into the device at off and flushes it.
func Write(t testing.TB, dev string, off int64, p []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	_, err = f.WriteAt(p, off)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
}
