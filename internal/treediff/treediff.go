// Package treediff compares two directory trees the way a user checks a migrated volume: every
// entry present on both sides with the same type, content, symlink target, permissions, mtime,
// owner, hard-link structure, holes, extended attributes and ACLs. Tests of the data plane and
// the end-to-end tests use it on a source volume and its copy.
package treediff

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options choose what is compared beyond names, types, contents and symlink targets.
type Options struct {
	Modes   bool // permission bits, setuid/setgid/sticky
	Mtimes  bool // modification times (directories and symlinks included)
	Owners  bool // uid and gid
	Links   bool // hard-link groups: paths sharing an inode on one side share one on the other
	Sparse  bool // a file with holes in the source has holes in the copy (allocates no more)
	Xattrs  bool // user.* extended attributes
	ACLs    bool // POSIX access and default ACLs
	Devices bool // device numbers of block and character devices
	// Root also compares the root directories' own attributes (an unprivileged copy cannot
	// set them on a volume root it does not own).
	Root bool
	// Skip leaves out entries (and below) for which it returns true; rel uses "/" separators.
	Skip func(rel string) bool
}

// All compares everything.
func All() Options {
	return Options{Modes: true, Mtimes: true, Owners: true, Links: true, Sparse: true, Xattrs: true, ACLs: true, Devices: true, Root: true}
}

// Difference is one mismatch.
type Difference struct {
	Path string // relative, "." for the root
	What string // e.g. "missing in copy", "content", "mode"
	Src  string
	Dst  string
}

func (d Difference) String() string {
	if d.Src == "" && d.Dst == "" {
		return fmt.Sprintf("%q: %s", d.Path, d.What)
	}
	return fmt.Sprintf("%q: %s: source %s, copy %s", d.Path, d.What, d.Src, d.Dst)
}

// Compare walks src and dst and returns their differences (nil when equal). An error means a
// tree could not be read.
func Compare(src, dst string, o Options) ([]Difference, error) {
	a, err := scan(src, o)
	if err != nil {
		return nil, err
	}
	b, err := scan(dst, o)
	if err != nil {
		return nil, err
	}
	var diffs []Difference
	add := func(p, what, s, d string) { diffs = append(diffs, Difference{p, what, s, d}) }
	// One pair of buffers for every file: allocating them per file costs more than the reads
	// in a tree of many small files.
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for _, rel := range a.order {
		ea := a.entries[rel]
		eb, ok := b.entries[rel]
		if !ok {
			add(rel, "missing in copy", "", "")
			continue
		}
		if ea.typ != eb.typ {
			add(rel, "type", typeName(ea.typ), typeName(eb.typ))
			continue
		}
		isRoot := rel == "."
		if o.Modes && (!isRoot || o.Root) && ea.mode != eb.mode {
			add(rel, "mode", fmt.Sprintf("%#o", ea.mode), fmt.Sprintf("%#o", eb.mode))
		}
		if o.Owners && (!isRoot || o.Root) && (ea.uid != eb.uid || ea.gid != eb.gid) {
			add(rel, "owner", fmt.Sprintf("%d:%d", ea.uid, ea.gid), fmt.Sprintf("%d:%d", eb.uid, eb.gid))
		}
		if o.Mtimes && (!isRoot || o.Root) && ea.mtime != eb.mtime {
			add(rel, "mtime", formatTime(ea.mtime), formatTime(eb.mtime))
		}
		switch ea.typ {
		case unix.S_IFREG:
			if ea.size != eb.size {
				add(rel, "size", fmt.Sprint(ea.size), fmt.Sprint(eb.size))
				continue
			}
			same, err := sameContent(filepath.Join(src, rel), filepath.Join(dst, rel), ba, bb)
			if err != nil {
				return nil, err
			}
			if !same {
				add(rel, "content", "", "")
			}
			// A file with holes must not be filled in: the copy allocates no more than the
			// source (plus a block of slack for filesystems that allocate differently).
			if o.Sparse && ea.blocks*512 < ea.size && eb.blocks > ea.blocks+8 {
				add(rel, "holes filled (allocated 512-byte blocks)", fmt.Sprint(ea.blocks), fmt.Sprint(eb.blocks))
			}
		case unix.S_IFLNK:
			if ea.target != eb.target {
				add(rel, "symlink target", ea.target, eb.target)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if o.Devices && ea.rdev != eb.rdev {
				add(rel, "device number", fmt.Sprint(ea.rdev), fmt.Sprint(eb.rdev))
			}
		}
		if (o.Xattrs || o.ACLs) && (!isRoot || o.Root) {
			for _, name := range unionKeys(ea.xattrs, eb.xattrs) {
				isACL := strings.HasPrefix(name, "system.posix_acl_")
				if (isACL && !o.ACLs) || (!isACL && !o.Xattrs) {
					continue
				}
				va, inA := ea.xattrs[name]
				vb, inB := eb.xattrs[name]
				if inA != inB || !bytes.Equal(va, vb) {
					add(rel, "xattr "+name, fmt.Sprintf("%q", va), fmt.Sprintf("%q", vb))
				}
			}
		}
	}
	for _, rel := range b.order {
		if _, ok := a.entries[rel]; !ok {
			add(rel, "extra in copy", "", "")
		}
	}
	if o.Links {
		diffs = append(diffs, compareLinks(a, b)...)
	}
	return diffs, nil
}

// Equal is Compare's verdict as one error listing the first differences.
func Equal(src, dst string, o Options) error {
	diffs, err := Compare(src, dst, o)
	if err != nil {
		return err
	}
	if len(diffs) == 0 {
		return nil
	}
	const show = 20
	var b strings.Builder
	fmt.Fprintf(&b, "%s and %s differ in %d way(s):", src, dst, len(diffs))
	for i, d := range diffs {
		if i == show {
			fmt.Fprintf(&b, "\n  … and %d more", len(diffs)-show)
			break
		}
		b.WriteString("\n  " + d.String())
	}
	return errors.New(b.String())
}

type entry struct {
	typ      uint32
	mode     uint32 // permission bits with setuid/setgid/sticky
	uid, gid uint32
	size     int64
	blocks   int64
	mtime    unix.Timespec
	target   string
	rdev     uint64
	ino      uint64
	nlink    uint64
	xattrs   map[string][]byte
}

type tree struct {
	entries map[string]*entry
	order   []string
}

func scan(root string, o Options) (*tree, error) {
	t := &tree{entries: map[string]*entry{}}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if rel != "." && o.Skip != nil && o.Skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		e := &entry{
			typ: st.Mode & unix.S_IFMT, mode: st.Mode & 0o7777, uid: st.Uid, gid: st.Gid,
			size: st.Size, blocks: st.Blocks, mtime: st.Mtim, rdev: st.Rdev, ino: st.Ino, nlink: uint64(st.Nlink),
		}
		if e.typ == unix.S_IFLNK {
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
			e.mode = 0 // symlink permissions mean nothing on Linux
		}
		if e.typ != unix.S_IFLNK && (o.Xattrs || o.ACLs) {
			if e.xattrs, err = readXattrs(p); err != nil {
				return err
			}
		}
		t.entries[rel] = e
		t.order = append(t.order, rel)
		return nil
	})
	return t, err
}

func readXattrs(p string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || size == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || strings.HasPrefix(name, "security.") {
			continue // labels belong to the node's policy, not to the data
		}
		vsize, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		v := make([]byte, vsize)
		if vsize > 0 {
			if _, err := unix.Lgetxattr(p, name, v); err != nil {
				return nil, err
			}
		}
		out[name] = v
	}
	return out, nil
}

// sameContent compares two files' bytes, reading them through the buffers ba and bb.
func sameContent(a, b string, ba, bb []byte) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb == io.EOF || eb == io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// compareLinks checks that the groups of paths sharing an inode are the same on both sides.
func compareLinks(a, b *tree) []Difference {
	group := func(t *tree) map[string]string {
		byIno := map[uint64][]string{}
		for _, rel := range t.order {
			e := t.entries[rel]
			if e.typ != unix.S_IFDIR && e.nlink > 1 {
				byIno[e.ino] = append(byIno[e.ino], rel)
			}
		}
		key := map[string]string{}
		for _, paths := range byIno {
			sort.Strings(paths)
			k := strings.Join(paths, "\x00")
			for _, p := range paths {
				key[p] = k
			}
		}
		return key
	}
	ga, gb := group(a), group(b)
	var diffs []Difference
	for _, rel := range a.order {
		if ga[rel] != gb[rel] {
			diffs = append(diffs, Difference{rel, "hard links", linkSet(ga[rel]), linkSet(gb[rel])})
		}
	}
	return diffs
}

func linkSet(k string) string {
	if k == "" {
		return "(none)"
	}
	return "[" + strings.ReplaceAll(k, "\x00", ", ") + "]"
}

func unionKeys(a, b map[string][]byte) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []map[string][]byte{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func formatTime(ts unix.Timespec) string {
	return time.Unix(ts.Unix()).UTC().Format(time.RFC3339Nano)
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %#o", t)
}
