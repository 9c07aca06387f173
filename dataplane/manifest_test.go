package dataplane

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// scanAll returns scanTree's entries.
func scanAll(t *testing.T, root string, o scanOptions) []manifestEntry {
	t.Helper()
	var out []manifestEntry
	require.NoError(t, scanTree(context.Background(), root, o, func(e *manifestEntry) error {
		out = append(out, *e)
		return nil
	}))
	return out
}

// TestScanOrder: entries come in the order cmpPath defines, which is a walk that visits each
// directory's names sorted and descends at once ("a/z" before "a.b", "a b" and "a-").
func TestScanOrder(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root, "a/z=1", "a.b=1", "a b=1", "a-=1", "a/b/c=1", "ab/x=1", "é=1", "new\nline/x=1", "lost+found/x=1", "A=1")
	var want []string
	require.NoError(t, filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == "lost+found":
			return filepath.SkipDir // as rsync: never copied
		case rel == ".":
			rel = ""
		}
		want = append(want, rel)
		return nil
	}))
	var got []string
	for i, e := range scanAll(t, root, scanOptions{}) {
		got = append(got, e.Path)
		if i > 0 {
			assert.Equal(t, -1, cmpPath(got[i-1], e.Path), "%q before %q", got[i-1], e.Path)
		}
	}
	assert.Equal(t, want, got)
}

func TestCmpPath(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "a", -1}, {"a", "a", 0}, {"a", "a/b", -1}, {"a/z", "a.b", -1}, {"a/z", "a b", -1},
		{"a.b", "a/z", 1}, {"ab", "a/z", 1}, {"a/b/c", "a/bc", -1}, {"b", "a/z", 1},
	} {
		assert.Equal(t, c.want, cmpPath(c.a, c.b), "%q vs %q", c.a, c.b)
	}
}

// TestManifestRoundTrip: every kind of entry and field comes back as scanned; a manifest cut
// short, or out of order, is an error, never a smaller volume.
func TestManifestRoundTrip(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root, "d/f=100", "d/hl=>d/f", "holes~4", "lnk->/somewhere/else", "empty/")
	require.NoError(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o600))
	require.NoError(t, unix.Setxattr(filepath.Join(root, "d/f"), "user.k", []byte("v"), 0))
	if os.Geteuid() == 0 {
		require.NoError(t, unix.Mknod(filepath.Join(root, "dev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
		require.NoError(t, os.Lchown(filepath.Join(root, "lnk"), 1234, 5678))
	}
	entries := scanAll(t, root, scanOptions{Xattrs: true})
	byPath := map[string]manifestEntry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	assert.Equal(t, kindDir, byPath[""].Kind)
	assert.Equal(t, flagHardLinked|flagXattrs, byPath["d/f"].Flags)
	assert.Equal(t, int64(100), byPath["d/f"].Size)
	assert.Equal(t, flagSparse, byPath["holes"].Flags)
	assert.Equal(t, "/somewhere/else", byPath["lnk"].Link)
	assert.Equal(t, kindFIFO, byPath["fifo"].Kind)
	assert.Equal(t, uint32(0o600), byPath["fifo"].Mode)
	if os.Geteuid() == 0 {
		assert.Equal(t, kindChar, byPath["dev"].Kind)
		assert.Equal(t, unix.Mkdev(1, 3), byPath["dev"].Rdev)
		assert.Equal(t, [2]uint32{1234, 5678}, [2]uint32{byPath["lnk"].UID, byPath["lnk"].GID})
	}

	file := filepath.Join(t.TempDir(), manifestFile)
	acls, xattrs, err := writeManifest(context.Background(), root, file, scanOptions{Xattrs: true})
	require.NoError(t, err)
	assert.False(t, acls)
	assert.True(t, xattrs)
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	read := func(b []byte) ([]manifestEntry, error) {
		r, err := newManifestReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		var out []manifestEntry
		for {
			e, err := r.next()
			if err != nil || e == nil {
				return out, err
			}
			out = append(out, *e)
		}
	}
	got, err := read(raw)
	require.NoError(t, err)
	assert.Equal(t, entries, got)
	for _, cut := range []int{len(raw) - 1, len(raw) / 2, len(manifestMagic) + 3} {
		_, err := read(raw[:cut])
		assert.Error(t, err, "cut at %d of %d bytes", cut, len(raw))
	}
	var swapped bytes.Buffer
	w, err := newManifestWriter(&swapped)
	require.NoError(t, err)
	require.NoError(t, w.add(&manifestEntry{Path: "", Kind: kindDir}))
	require.NoError(t, w.add(&manifestEntry{Path: "b", Kind: kindFile}))
	require.NoError(t, w.add(&manifestEntry{Path: "a", Kind: kindFile}))
	require.NoError(t, w.close())
	_, err = read(swapped.Bytes())
	assert.ErrorContains(t, err, `"a" does not follow "b"`)
}

// manifestOf encodes entries (the root first) as a manifest reader.
func manifestOf(t *testing.T, entries ...manifestEntry) *manifestReader {
	t.Helper()
	var b bytes.Buffer
	w, err := newManifestWriter(&b)
	require.NoError(t, err)
	require.NoError(t, w.add(&manifestEntry{Kind: kindDir, Mode: 0o755}))
	for i := range entries {
		require.NoError(t, w.add(&entries[i]))
	}
	require.NoError(t, w.close())
	r, err := newManifestReader(&b)
	require.NoError(t, err)
	return r
}

func file(p string, size int64) manifestEntry {
	return manifestEntry{Path: p, Kind: kindFile, Mode: 0o644, Size: size, Sec: 1000}
}

func dir(p string) manifestEntry {
	return manifestEntry{Path: p, Kind: kindDir, Mode: 0o755, Sec: 1000}
}

func with(e manifestEntry, change func(*manifestEntry)) manifestEntry {
	change(&e)
	return e
}

// TestDiffManifests: the list holds each differing path once (a gone directory, not what it
// held), and the cases the fields cannot decide fall back to the whole volume.
func TestDiffManifests(t *testing.T) {
	many := make([]manifestEntry, 0, 3000)
	for i := 0; i < 3000; i++ {
		many = append(many, file(fmt.Sprintf("f%04d", i), 1))
	}
	for _, c := range []struct {
		name     string
		src, dst []manifestEntry
		opts     diffOptions
		want     []string
		fallback string
	}{
		{name: "equal", src: []manifestEntry{dir("a"), file("a/x", 1)}, dst: []manifestEntry{dir("a"), file("a/x", 1)}},
		{name: "owners compared only when set",
			src: []manifestEntry{with(file("x", 1), func(e *manifestEntry) { e.UID = 5 })}, dst: []manifestEntry{file("x", 1)}},
		{name: "owners", opts: diffOptions{Owners: true}, want: []string{"x"},
			src: []manifestEntry{with(file("x", 1), func(e *manifestEntry) { e.UID = 5 })}, dst: []manifestEntry{file("x", 1)}},
		{name: "nanoseconds", want: []string{"x"},
			src: []manifestEntry{with(file("x", 1), func(e *manifestEntry) { e.Nsec = 1 })}, dst: []manifestEntry{file("x", 1)}},
		{name: "a gone directory once", want: []string{"a", "b"},
			src: []manifestEntry{file("b", 1)}, dst: []manifestEntry{dir("a"), file("a/x", 1), dir("a/y"), file("a/y/z", 1)}},
		{name: "a directory becomes a file", want: []string{"a"},
			src: []manifestEntry{file("a", 1), file("a.b", 1)}, dst: []manifestEntry{dir("a"), file("a/x", 1), file("a.b", 1)}},
		{name: "a file becomes a directory", want: []string{"a", "a/x", "a.b"},
			src: []manifestEntry{dir("a"), file("a/x", 1), file("a.b", 1)}, dst: []manifestEntry{file("a", 1)}},
		{name: "hard links", fallback: "hard links",
			src: []manifestEntry{with(file("x", 1), func(e *manifestEntry) { e.Flags = flagHardLinked })}, dst: []manifestEntry{file("x", 1)}},
		{name: "hard links on the target only", fallback: "hard links",
			src: []manifestEntry{file("x", 1)}, dst: []manifestEntry{with(file("x", 1), func(e *manifestEntry) { e.Flags = flagHardLinked })}},
		{name: "xattrs", fallback: "ACLs or extended attributes",
			src: []manifestEntry{file("x", 1)}, dst: []manifestEntry{with(file("x", 1), func(e *manifestEntry) { e.Flags = flagXattrs })}},
		{name: "mounts", fallback: "another filesystem is mounted below the volume",
			src: []manifestEntry{with(dir("m"), func(e *manifestEntry) { e.Flags = flagMount })}},
		{name: "read-only directory, unprivileged server", fallback: "directories without write permission, and the server is not root",
			src: []manifestEntry{with(dir("ro"), func(e *manifestEntry) { e.Mode = 0o555 })}, dst: []manifestEntry{dir("ro")}},
		{name: "read-only directory, root server", opts: diffOptions{Owners: true}, want: []string{"ro"},
			src: []manifestEntry{with(dir("ro"), func(e *manifestEntry) { e.Mode = 0o555 })}, dst: []manifestEntry{dir("ro")}},
		{name: "devices the server cannot create", fallback: "device files the server cannot create",
			src: []manifestEntry{{Path: "dev", Kind: kindChar, Mode: 0o600, Rdev: 259}}},
		{name: "most of the volume changed", fallback: "a large part of the volume changed", src: many},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := diffManifests(manifestOf(t, c.src...), manifestOf(t, c.dst...), c.opts)
			require.NoError(t, err)
			assert.Equal(t, c.fallback, p.Fallback)
			assert.Equal(t, c.want, p.Entries)
		})
	}

	// The root's own attributes, when the server sets them.
	src := manifestOf(t)
	var b bytes.Buffer
	w, err := newManifestWriter(&b)
	require.NoError(t, err)
	require.NoError(t, w.add(&manifestEntry{Kind: kindDir, Mode: 0o700}))
	require.NoError(t, w.close())
	dst, err := newManifestReader(&b)
	require.NoError(t, err)
	p, err := diffManifests(src, dst, diffOptions{RootAttrs: true})
	require.NoError(t, err)
	assert.True(t, p.Root)
	assert.Empty(t, p.Entries)
}

// BenchmarkDiffManifests: comparing two manifests of 100,000 equal entries.
func BenchmarkDiffManifests(b *testing.B) {
	var m bytes.Buffer
	w, _ := newManifestWriter(&m)
	_ = w.add(&manifestEntry{Kind: kindDir, Mode: 0o755})
	for d := 0; d < 100; d++ {
		_ = w.add(&manifestEntry{Path: fmt.Sprintf("d%04d", d), Kind: kindDir, Mode: 0o755, Sec: 1e9})
		for f := 0; f < 1000; f++ {
			_ = w.add(&manifestEntry{Path: fmt.Sprintf("d%04d/f%07d", d, d*1000+f), Kind: kindFile, Mode: 0o644, Size: 4096, Sec: 1.7e9, Nsec: 123456789})
		}
	}
	_ = w.close()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		src, _ := newManifestReader(bytes.NewReader(m.Bytes()))
		dst, _ := newManifestReader(bytes.NewReader(m.Bytes()))
		if p, err := diffManifests(src, dst, diffOptions{}); err != nil || len(p.Entries) > 0 {
			b.Fatal(err, p)
		}
	}
}
