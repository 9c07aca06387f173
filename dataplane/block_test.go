package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/ferry-dev/ferry/internal/testblock"
)

// The block tests run on loop devices over sparse files: they must run as root (CI does).

// loopDevice is a loop device over a sparse backing file.
type loopDevice struct{ testblock.Device }

func newLoop(t *testing.T, dir, name string, size int64) loopDevice {
	return loopDevice{testblock.New(t, dir, name, size)}
}

// podNode makes dir/volume, a device node of l's device in a directory of its own: the target
// as a pod sees it (/dev/ferry/volume).
func (l loopDevice) podNode(t *testing.T, dir string) string {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(l.Path, &st))
	nodeDir := filepath.Join(dir, "dev-"+filepath.Base(l.Path))
	require.NoError(t, os.Mkdir(nodeDir, 0o755))
	node := filepath.Join(nodeDir, "volume")
	require.NoError(t, unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)))
	return node
}

// fillWithZeroRuns writes random data to dev with long zero runs: every other MiB stays
// zero, and some runs start and end off any sector boundary.
func fillWithZeroRuns(t *testing.T, dev string, size int64, seed uint64) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{byte(seed), 0xb1})
	buf := make([]byte, size)
	for off := int64(0); off < size; off += 2 << 20 {
		_, _ = rng.Read(buf[off:min(off+1<<20, size)])
	}
	// Zero runs in the data: odd offsets and lengths.
	for _, r := range [][2]int64{{4<<20 + 1001, 70001}, {6<<20 + 333, 300000}, {8<<20 - 5, 10}} {
		if r[0]+r[1] <= size {
			clear(buf[r[0] : r[0]+r[1]])
		}
	}
	testblock.Write(t, dev, 0, buf)
}

// fillRandom writes random data over the whole device.
func fillRandom(t *testing.T, dev string, size int64, seed uint64) {
	t.Helper()
	buf := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), 0xb2}).Read(buf)
	testblock.Write(t, dev, 0, buf)
}

// requireSameBlocks checks that the first n bytes of both devices are equal.
func requireSameBlocks(t *testing.T, a, b string, n int64) {
	t.Helper()
	fa, err := os.Open(a)
	require.NoError(t, err)
	defer fa.Close()
	fb, err := os.Open(b)
	require.NoError(t, err)
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(ba)) {
		k := min(int64(len(ba)), n-off)
		_, err := io.ReadFull(fa, ba[:k])
		require.NoError(t, err)
		_, err = io.ReadFull(fb, bb[:k])
		require.NoError(t, err)
		if !bytes.Equal(ba[:k], bb[:k]) {
			i := 0
			for ba[i] == bb[i] {
				i++
			}
			t.Fatalf("%s and %s differ at byte %d", a, b, off+int64(i))
		}
	}
}

// sendDevice starts a block server on node and sends src to it.
func sendDevice(t *testing.T, base, node, src string, tweak func(*SendOptions)) sendResult {
	t.Helper()
	srv := startServerWith(t, base, "", func(o *ServeOptions) { o.Dir, o.Device = "", node })
	r := send(t, srv, base, "", func(o *SendOptions) {
		o.Dir, o.Device = "", src
		if tweak != nil {
			tweak(o)
		}
	})
	if r.err == nil {
		require.NoError(t, srv.wait(t))
	}
	return r
}

// checksumBound is what rsync's block checksums may cost on the wire for a device of size
// bytes, with room to spare: about 20 bytes per block and a match token of 4 per block, plus
// the protocol's start and end.
func checksumBound(size int64) int64 { return size/blockSize*32 + 64<<10 }

// TestBlockRoundTrip: a device with data and zero runs goes into a fresh sparse-backed device
// (its zero regions stay unallocated), then again after 1 % of its 64 KiB blocks changed (only
// about those go on the wire), then again unchanged (only checksums go).
func TestBlockRoundTrip(t *testing.T) {
	base := t.TempDir()
	const size = 64 << 20
	src := newLoop(t, base, "src", size)
	dst := newLoop(t, base, "dst", size)
	node := dst.podNode(t, base)
	fillWithZeroRuns(t, src.Path, size, 1)

	r := sendDevice(t, base, node, src.Path, func(o *SendOptions) { o.Verify = true })
	require.NoError(t, r.err)
	requireSameBlocks(t, src.Path, node, size)
	d := r.done
	assert.Equal(t, int64(size), d.BytesTotal)
	assert.Equal(t, int64(1), d.Files)
	assert.Equal(t, int64(1), d.FilesTotal)
	assert.Equal(t, int64(1), d.FilesTransferred)
	require.NotNil(t, d.Verified)
	assert.Equal(t, Verification{Files: 1, Bytes: size}, *d.Verified, "the copy's own whole-device checksum is the verification")
	assert.Greater(t, r.count(ReportProgress), 0)
	srcAlloc, dstAlloc := src.Allocated(t), dst.Allocated(t)
	t.Logf("first copy: %d bytes sent; allocated: source %d, target %d of %d", d.BytesSent, srcAlloc, dstAlloc, size)
	assert.Less(t, d.BytesSent, int64(size), "the source's zero regions match the fresh target's and are not sent")
	assert.LessOrEqual(t, dstAlloc, srcAlloc+2<<20, "the zero regions stay unallocated on the target")

	// 1 % of the 64 KiB blocks change.
	rng := rand.New(rand.NewPCG(2, 3))
	const chunk = 64 << 10
	changed := int64(0)
	picked := map[int64]bool{}
	for len(picked) < size/chunk/100 {
		picked[rng.Int64N(size/chunk)] = true
	}
	for c := range picked {
		p := make([]byte, chunk)
		_, _ = rand.NewChaCha8([32]byte{byte(c), byte(c >> 8), 9}).Read(p)
		testblock.Write(t, src.Path, c*chunk, p)
		changed += chunk
	}
	r = sendDevice(t, base, node, src.Path, nil)
	require.NoError(t, r.err)
	requireSameBlocks(t, src.Path, node, size)
	bound := 4*changed + checksumBound(size)
	t.Logf("re-stage after %d blocks of 64 KiB changed (%d bytes): %d bytes sent (bound %d)", len(picked), changed, r.done.BytesSent, bound)
	assert.Less(t, r.done.BytesSent, bound)
	assert.Equal(t, int64(1), r.done.FilesTransferred)

	r = sendDevice(t, base, node, src.Path, nil)
	require.NoError(t, r.err)
	requireSameBlocks(t, src.Path, node, size)
	t.Logf("re-stage of an unchanged device: %d bytes sent (bound %d)", r.done.BytesSent, checksumBound(size))
	assert.Less(t, r.done.BytesSent, checksumBound(size))
	assert.Equal(t, int64(0), r.done.FilesTransferred, "nothing differed")
}

// TestBlockStaleTarget: a target full of random data ends equal to a source of mostly zeros
// (rsync must write the zeros, not seek over the stale data), and a larger target keeps its
// bytes beyond the source's size.
func TestBlockStaleTarget(t *testing.T) {
	base := t.TempDir()
	const size = 32 << 20
	src := newLoop(t, base, "src", size)
	dst := newLoop(t, base, "dst", size+8<<20)
	node := dst.podNode(t, base)
	fillRandom(t, dst.Path, dst.Size, 7)
	tail := make([]byte, 8<<20)
	f, err := os.Open(dst.Path)
	require.NoError(t, err)
	_, err = f.ReadAt(tail, size)
	f.Close()
	require.NoError(t, err)
	// Mostly zeros: a few MiB of data, one run at an odd offset.
	p := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(p)
	testblock.Write(t, src.Path, 5<<20+777, p)

	r := sendDevice(t, base, node, src.Path, nil)
	require.NoError(t, r.err)
	requireSameBlocks(t, src.Path, node, size)
	got := make([]byte, 8<<20)
	f, err = os.Open(node)
	require.NoError(t, err)
	_, err = f.ReadAt(got, size)
	f.Close()
	require.NoError(t, err)
	assert.True(t, bytes.Equal(tail, got), "a target larger than the source keeps what lies beyond the source's size")
	assert.Equal(t, int64(size), r.done.BytesTotal)
}

// TestBlockTargetTooSmall: a source larger than the target fails at once, naming both sizes.
func TestBlockTargetTooSmall(t *testing.T) {
	base := t.TempDir()
	src := newLoop(t, base, "src", 16<<20)
	dst := newLoop(t, base, "dst", 8<<20)
	r := sendDevice(t, base, dst.podNode(t, base), src.Path, nil)
	require.Error(t, r.err)
	assert.False(t, retryable(r.err))
	assert.Contains(t, r.err.Error(), fmt.Sprintf("is %d bytes, the target device %d bytes", 16<<20, 8<<20))
	assert.Equal(t, 0, r.count(ReportRetry))
}

// TestBlockRequireEmpty: serve --device --require-empty refuses a device with anything in its
// first MiB (exit 3) and takes a zeroed one.
func TestBlockRequireEmpty(t *testing.T) {
	base := t.TempDir()
	requireTools(t)
	dev := newLoop(t, base, "dst", 8<<20)
	node := dev.podNode(t, base)
	certs, err := GenerateCerts(time.Hour)
	require.NoError(t, err)
	require.NoError(t, certs.WriteDir(filepath.Join(base, "certs")))
	serve := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx, ServeOptions{Device: node, Listen: "127.0.0.1:" + fmt.Sprint(freePort(t)),
				CertDir: filepath.Join(base, "certs", ServerDir), RequireEmpty: true, Log: testLogger(t, "serve"),
				Ready: func() { close(ready) }})
		}()
		select {
		case err := <-done:
			return err
		case <-ready:
			cancel()
			<-done
			return nil
		}
	}
	require.NoError(t, serve(), "a zeroed device is empty")
	testblock.Write(t, dev.Path, 1024, []byte{0x53, 0xef}) // where an ext4 superblock would be
	err = serve()
	require.ErrorIs(t, err, ErrTargetNotEmpty)
	var c interface{ ExitCode() int }
	require.True(t, errors.As(err, &c))
	assert.Equal(t, ExitTargetNotEmpty, c.ExitCode())
}

// TestBlockModeMismatch: a block client and a directory server, or the other way round, fail
// at once and say what to change.
func TestBlockModeMismatch(t *testing.T) {
	base := t.TempDir()
	src := newLoop(t, base, "src", 8<<20)
	dir := filepath.Join(base, "dir")
	require.NoError(t, os.Mkdir(dir, 0o755))

	srv := startServer(t, filepath.Join(base, "a"), dir)
	r := send(t, srv, filepath.Join(base, "a"), "", func(o *SendOptions) { o.Dir, o.Device = "", src.Path })
	require.Error(t, r.err)
	assert.False(t, retryable(r.err))
	assert.Contains(t, r.err.Error(), "the server writes into a directory (serve --dir), but this client sends a block device")

	dst := newLoop(t, base, "dst", 8<<20)
	node := dst.podNode(t, base)
	srv = startServerWith(t, filepath.Join(base, "b"), "", func(o *ServeOptions) { o.Dir, o.Device = "", node })
	r = send(t, srv, filepath.Join(base, "b"), dir, nil)
	require.Error(t, r.err)
	assert.False(t, retryable(r.err))
	assert.Contains(t, r.err.Error(), "the server writes into a block device (serve --device, volume), but this client sends a directory")
}

// TestBlockOptionsExclusive: exactly one of --dir and --device.
func TestBlockOptionsExclusive(t *testing.T) {
	so := SendOptions{Dir: "/a", Device: "/b", To: "x:1", CertDir: "/c", Streams: 1, MaxAttempts: 1}
	assert.ErrorContains(t, so.Validate(), "--dir and --device exclude each other")
	so.Dir, so.Device = "", ""
	assert.ErrorContains(t, so.Validate(), "--dir (or --device), --to and --certs are required")
	so.Device = "/b"
	assert.NoError(t, so.Validate())
	assert.Contains(t, so.Args(), "--device=/b")
	vo := ServeOptions{Dir: "/a", Device: "/b", CertDir: "/c"}
	assert.ErrorContains(t, vo.Validate(), "--dir and --device exclude each other")
	vo.Dir = ""
	assert.NoError(t, vo.Validate())
	assert.Contains(t, vo.Args(), "--device=/b")
	_, err := newSender(SendOptions{Dir: t.TempDir(), Device: "/dev/null", To: "x:1", CertDir: "/c"})
	assert.ErrorContains(t, err, "--dir and --device exclude each other")
	_, err = newSender(SendOptions{Device: "/dev/null", To: "x:1", CertDir: "/c"})
	assert.ErrorContains(t, err, "is not a block device")
}

// TestBlockHostileClientWritesOnlyTheDevice: a client with the transfer's certificate but not
// ferry's client, against a block-mode server, tries to add files beside the device, to reach
// out of its directory, and to replace the device node (by a file, a directory, a link). Every
// attempt fails, and the directory holds the device node alone, unchanged.
func TestBlockHostileClientWritesOnlyTheDevice(t *testing.T) {
	base := t.TempDir()
	dst := newLoop(t, base, "dst", 8<<20)
	node := dst.podNode(t, base)
	nodeDir := filepath.Dir(node)
	outside := filepath.Join(base, "outside")
	require.NoError(t, os.Mkdir(outside, 0o777))
	var before unix.Stat_t
	require.NoError(t, unix.Stat(node, &before))

	srv := startServerWith(t, base, "", func(o *ServeOptions) { o.Dir, o.Device = "", node })
	h := &helperSetup{base: base, certDir: filepath.Join(base, "certs")}
	c := newHostileClient(t, h, srv)

	src := filepath.Join(base, "src")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "volume"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "file"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "volume", "inside"), []byte("x"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(src, "link")))
	file := filepath.Join(src, "file")
	data := daemonURL(dataModule, "")
	cases := []struct {
		name string
		args []string
	}{
		{"a new file", []string{file, daemonURL(dataModule, "new")}},
		{"a new file, in place", []string{"--write-devices", file, daemonURL(dataModule, "new")}},
		{"../ destination", []string{"--write-devices", file, daemonURL(dataModule, "../outside/new")}},
		{"a file over the device node", []string{file, daemonURL(dataModule, "volume")}},
		{"a file over the device node, in place", []string{"--inplace", file, daemonURL(dataModule, "volume")}},
		{"a directory over the device node", []string{"-r", "--write-devices", src + "/", data}},
		{"a directory over the device node, --dirs", []string{"-d", "--write-devices", filepath.Join(src, "volume"), data}},
		{"a link", []string{"-l", "--write-devices", filepath.Join(src, "link"), daemonURL(dataModule, "volume")}},
		{"deletions", []string{"-d", "--delete", "--write-devices", src + "/", data}},
		{"a path of its own", []string{"--relative", "--write-devices", src + "/./file", data}},
		{"mkpath", []string{"--mkpath", "--write-devices", file, daemonURL(dataModule, "sub/new")}},
		{"a device file", []string{"-D", "--write-devices", "/dev/null", daemonURL(dataModule, "null")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.run(tc.args...)
			t.Logf("rsync %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			assert.Error(t, err, "the server must not take this")
			entries, err := os.ReadDir(nodeDir)
			require.NoError(t, err)
			require.Len(t, entries, 1, "the device's directory holds the device alone")
			var st unix.Stat_t
			require.NoError(t, unix.Lstat(node, &st))
			assert.Equal(t, uint32(unix.S_IFBLK), st.Mode&unix.S_IFMT, "still a block device")
			assert.Equal(t, before.Rdev, st.Rdev, "still the same device")
			out2, err := os.ReadDir(outside)
			require.NoError(t, err)
			assert.Empty(t, out2, "nothing written outside")
		})
	}
	c.finish(t, base)
	require.NoError(t, srv.wait(t))
}

// TestBlockRsyncdConfig: a block-mode daemon accepts --write-devices in the data module only,
// lets only the device be written, fsyncs the device before the completion notice, and
// ferry's block client sends no option the module refuses.
func TestBlockRsyncdConfig(t *testing.T) {
	cfg := rsyncdConfig{DataDir: "/dev/ferry", ControlDir: "/tmp/w/control", Sync: "/usr/bin/sync", Root: true, Device: "volume"}.render()
	global, data, _ := strings.Cut(cfg, "\n[data]\n")
	data, rest, _ := strings.Cut(data, "\n[control]\n")
	assert.Contains(t, global, "refuse options = keep-dirlinks copy-unsafe-links copy-dirlinks copy-links write-devices ",
		"the control and done modules still refuse --write-devices")
	assert.Contains(t, data, "path = /dev/ferry\n")
	assert.Contains(t, data, "filter = + /volume - *\n")
	assert.Contains(t, data, "use chroot = yes\n")
	assert.Contains(t, data, " !write-devices\n")
	assert.Contains(t, data, "pre-xfer exec = i=1;")
	assert.Contains(t, rest, "pre-xfer exec = '/usr/bin/sync' '/dev/ferry/volume'\n", "fsync of the device, not syncfs of /dev")
	refused := strings.Fields(blockRefuseOptions())
	for _, a := range (rsyncOptions{Compress: true, BwLimitKBps: 1, Timeout: time.Minute}).blockArgs("/dev/src", "volume") {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		for _, r := range refused {
			if strings.HasSuffix(r, "*") {
				assert.False(t, strings.HasPrefix(name, strings.TrimSuffix(r, "*")), "%s is refused by the server", a)
			} else {
				assert.NotEqual(t, r, name, "%s is refused by the server", a)
			}
		}
	}
}
