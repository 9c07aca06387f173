package dataplane

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// A manifest lists every entry of a volume with what rsync compares and sets (type, mode,
// owner, size, mtime, link target, device number), in one canonical order: a directory's
// entries sorted by name bytes, each directory followed at once by its contents. serve writes
// the target's into the control module when it starts; send writes the source's while it waits
// for that, and compares the two in one streaming pass (restage.go), so memory does not grow
// with the volume.
//
// Encoding: manifestMagic, then one record per entry, then a trailer. A record is the path as
// the length of the prefix it shares with the previous path and the rest, then kind, flags,
// and the numbers as varints. The trailer (a record of kind 0) carries the entry count, so a
// cut-off manifest is an error, never a shorter volume.

const (
	manifestFile  = "manifest" // the target's manifest, in the control module
	manifestMagic = "ferry-manifest 1\n"
)

// entryKind is an entry's file type, as `find -printf %y` spells it.
type entryKind byte

const (
	kindDir    entryKind = 'd'
	kindFile   entryKind = 'f'
	kindLink   entryKind = 'l'
	kindChar   entryKind = 'c'
	kindBlock  entryKind = 'b'
	kindFIFO   entryKind = 'p'
	kindSocket entryKind = 's'
)

// entryFlags note what makes an entry need more than a comparison of its fields.
type entryFlags uint8

const (
	// flagHardLinked: a non-directory with more than one link (its group must travel whole).
	flagHardLinked entryFlags = 1 << iota
	flagACLs                  // carries a POSIX ACL
	flagXattrs                // carries an extended attribute rsync copies
	flagSparse                // a regular file with holes
	flagMount                 // a directory where another filesystem is mounted (not descended)
)

// manifestEntry is one entry of a manifest.
type manifestEntry struct {
	Path      string // relative to the volume root; "" is the root itself
	Kind      entryKind
	Flags     entryFlags
	Mode      uint32 // permission bits with setuid, setgid and sticky
	UID, GID  uint32
	Size      int64
	Sec, Nsec int64 // mtime
	Rdev      uint64
	Link      string // a symlink's target
}

func kindOf(mode uint32) entryKind {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return kindDir
	case unix.S_IFREG:
		return kindFile
	case unix.S_IFLNK:
		return kindLink
	case unix.S_IFCHR:
		return kindChar
	case unix.S_IFBLK:
		return kindBlock
	case unix.S_IFIFO:
		return kindFIFO
	default:
		return kindSocket
	}
}

// cmpPath orders paths as a manifest lists them: component by component, so "a/z" comes
// before "a.b" ('/' sorts before every byte a name can hold).
func cmpPath(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		switch {
		case ca == cb:
			continue
		case ca == '/':
			return -1
		case cb == '/':
			return 1
		case ca < cb:
			return -1
		default:
			return 1
		}
	}
	return cmp.Compare(len(a), len(b))
}

// scanOptions shape scanTree.
type scanOptions struct {
	// Xattrs: look for ACLs and extended attributes (the filesystem supports them).
	Xattrs bool
	// Unmunge: link targets carry mungePrefix (serve without root, links.go); one comes off.
	Unmunge bool
}

// scanTree calls emit for the root ("") and every entry below it, in manifest order. Like
// rsync (commonArgs), it leaves out the root's lost+found and does not descend into other
// filesystems. An entry that vanishes while it is read is left out (rsync then reports it).
func scanTree(ctx context.Context, root string, o scanOptions, emit func(*manifestEntry) error) error {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reading %s: %w", root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("reading %s: %w", root, err)
	}
	sc := &treeScanner{ctx: ctx, o: o, dev: st.Dev, emit: emit}
	e := sc.entry("", &st)
	if o.Xattrs {
		e.Flags |= sc.xattrFlags(unix.AT_FDCWD, "", root)
	}
	if err := emit(&e); err != nil {
		unix.Close(fd)
		return err
	}
	return sc.dir(fd, root, "")
}

type treeScanner struct {
	ctx  context.Context
	o    scanOptions
	dev  uint64
	emit func(*manifestEntry) error
	xbuf []byte
	lbuf []byte
}

func (sc *treeScanner) entry(rel string, st *unix.Stat_t) manifestEntry {
	e := manifestEntry{Path: rel, Kind: kindOf(st.Mode), Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec}
	switch e.Kind {
	case kindFile:
		e.Size = st.Size
		if st.Blocks*512 < st.Size {
			e.Flags |= flagSparse
		}
	case kindChar, kindBlock:
		e.Rdev = st.Rdev
	}
	if e.Kind != kindDir && st.Nlink > 1 {
		e.Flags |= flagHardLinked
	}
	return e
}

func (sc *treeScanner) xattrFlags(dirfd int, abs, name string) entryFlags {
	var f entryFlags
	acls, xattrs, buf := copiedXattrs(dirfd, abs, name, sc.xbuf)
	sc.xbuf = buf
	if acls {
		f |= flagACLs
	}
	if xattrs {
		f |= flagXattrs
	}
	return f
}

// dir emits the entries of the directory open as fd (abs, rel) and closes fd.
func (sc *treeScanner) dir(fd int, abs, rel string) error {
	f := os.NewFile(uintptr(fd), abs)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return fmt.Errorf("reading directory %s: %w", abs, err)
	}
	sort.Strings(names)
	defer f.Close()
	for _, name := range names {
		if rel == "" && name == "lost+found" {
			continue
		}
		if err := sc.ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("reading %s: %w", path.Join(abs, name), err)
		}
		e := sc.entry(path.Join(rel, name), &st)
		if e.Kind == kindLink {
			target, err := sc.readlinkat(fd, name)
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading link %s: %w", path.Join(abs, name), err)
			}
			if sc.o.Unmunge {
				target = strings.TrimPrefix(target, mungePrefix)
			}
			e.Link = target
		}
		if sc.o.Xattrs {
			e.Flags |= sc.xattrFlags(fd, abs, name)
		}
		descend := e.Kind == kindDir
		if descend && st.Dev != sc.dev {
			e.Flags |= flagMount
			descend = false
		}
		if err := sc.emit(&e); err != nil {
			return err
		}
		if !descend {
			continue
		}
		cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading directory %s: %w", path.Join(abs, name), err)
		}
		if err := sc.dir(cfd, abs+"/"+name, e.Path); err != nil {
			return err
		}
	}
	return nil
}

func (sc *treeScanner) readlinkat(fd int, name string) (string, error) {
	if sc.lbuf == nil {
		sc.lbuf = make([]byte, unix.PathMax)
	}
	n, err := unix.Readlinkat(fd, name, sc.lbuf)
	if err != nil {
		return "", err
	}
	return string(sc.lbuf[:n]), nil
}

// manifestWriter encodes entries, in manifest order, to w.
type manifestWriter struct {
	w    *bufio.Writer
	prev string
	n    uint64
	buf  []byte
}

func newManifestWriter(w io.Writer) (*manifestWriter, error) {
	m := &manifestWriter{w: bufio.NewWriterSize(w, 64<<10)}
	_, err := m.w.WriteString(manifestMagic)
	return m, err
}

func (m *manifestWriter) add(e *manifestEntry) error {
	shared := 0
	for shared < len(m.prev) && shared < len(e.Path) && m.prev[shared] == e.Path[shared] {
		shared++
	}
	b := m.buf[:0]
	b = binary.AppendUvarint(b, uint64(shared))
	b = binary.AppendUvarint(b, uint64(len(e.Path)-shared))
	b = append(b, e.Path[shared:]...)
	b = append(b, byte(e.Kind), byte(e.Flags))
	b = binary.AppendUvarint(b, uint64(e.Mode))
	b = binary.AppendUvarint(b, uint64(e.UID))
	b = binary.AppendUvarint(b, uint64(e.GID))
	b = binary.AppendVarint(b, e.Size)
	b = binary.AppendVarint(b, e.Sec)
	b = binary.AppendVarint(b, e.Nsec)
	b = binary.AppendUvarint(b, e.Rdev)
	b = binary.AppendUvarint(b, uint64(len(e.Link)))
	b = append(b, e.Link...)
	m.buf = b
	m.prev = e.Path
	m.n++
	_, err := m.w.Write(b)
	return err
}

// close writes the trailer and flushes.
func (m *manifestWriter) close() error {
	b := binary.AppendUvarint(nil, 0)
	b = binary.AppendUvarint(b, 0)
	b = append(b, 0)
	b = binary.AppendUvarint(b, m.n)
	if _, err := m.w.Write(b); err != nil {
		return err
	}
	return m.w.Flush()
}

// manifestReader decodes a manifest; next returns nil at its end.
type manifestReader struct {
	r    *bufio.Reader
	prev []byte
	n    uint64
	end  bool
}

func newManifestReader(r io.Reader) (*manifestReader, error) {
	m := &manifestReader{r: bufio.NewReaderSize(r, 64<<10)}
	magic := make([]byte, len(manifestMagic))
	if _, err := io.ReadFull(m.r, magic); err != nil || string(magic) != manifestMagic {
		return nil, fmt.Errorf("not a manifest of this version")
	}
	return m, nil
}

func (m *manifestReader) next() (*manifestEntry, error) {
	if m.end {
		return nil, nil
	}
	bad := func(err error) (*manifestEntry, error) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("manifest entry %d: %w", m.n+1, err)
	}
	shared, err := binary.ReadUvarint(m.r)
	if err != nil {
		return bad(err)
	}
	rest, err := binary.ReadUvarint(m.r)
	if err != nil {
		return bad(err)
	}
	if shared > uint64(len(m.prev)) || rest > unix.PathMax*64 {
		return bad(errors.New("corrupt path"))
	}
	p := append(m.prev[:shared:shared], make([]byte, rest)...)
	if _, err := io.ReadFull(m.r, p[shared:]); err != nil {
		return bad(err)
	}
	kind, err := m.r.ReadByte()
	if err != nil {
		return bad(err)
	}
	if kind == 0 {
		count, err := binary.ReadUvarint(m.r)
		if err != nil {
			return bad(err)
		}
		if count != m.n {
			return bad(fmt.Errorf("the trailer counts %d entries, %d were read", count, m.n))
		}
		m.end = true
		return nil, nil
	}
	e := &manifestEntry{Path: string(p), Kind: entryKind(kind)}
	flags, err := m.r.ReadByte()
	if err != nil {
		return bad(err)
	}
	e.Flags = entryFlags(flags)
	u := func() uint64 {
		var v uint64
		if err == nil {
			v, err = binary.ReadUvarint(m.r)
		}
		return v
	}
	v := func() int64 {
		var x int64
		if err == nil {
			x, err = binary.ReadVarint(m.r)
		}
		return x
	}
	e.Mode, e.UID, e.GID = uint32(u()), uint32(u()), uint32(u())
	e.Size, e.Sec, e.Nsec = v(), v(), v()
	e.Rdev = u()
	linkLen := u()
	if err != nil {
		return bad(err)
	}
	if linkLen > unix.PathMax {
		return bad(errors.New("corrupt link target"))
	}
	link := make([]byte, linkLen)
	if _, err := io.ReadFull(m.r, link); err != nil {
		return bad(err)
	}
	e.Link = string(link)
	if m.n > 0 && cmpPath(string(m.prev), e.Path) >= 0 {
		return bad(fmt.Errorf("%q does not follow %q", e.Path, m.prev))
	}
	m.prev = p
	m.n++
	return e, nil
}

// writeManifest scans dir into a manifest at file (written under a temporary name, renamed
// when complete) and returns which of ACLs and xattrs it found.
func writeManifest(ctx context.Context, dir, file string, o scanOptions) (acls, xattrs bool, err error) {
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, false, err
	}
	defer os.Remove(tmp)
	defer f.Close()
	w, err := newManifestWriter(f)
	if err != nil {
		return false, false, err
	}
	err = scanTree(ctx, dir, o, func(e *manifestEntry) error {
		acls = acls || e.Flags&flagACLs != 0
		xattrs = xattrs || e.Flags&flagXattrs != 0
		return w.add(e)
	})
	if err == nil {
		err = w.close()
	}
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, file)
	}
	return acls, xattrs, err
}
