package dataplane

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a transfer is split into parallel rsync streams.
//
// Each stream runs rsync processes over their own TLS connections. Correctness rests on one
// rule: every directory's entries are owned by exactly one unit, whose rsync copies them and
// deletes what the source no longer has there. A unit is either a whole subtree (a "deep" unit:
// one --files-from entry; rsync recurses and deletes inside) or one directory's own entries
// without the contents of its subdirectories (a "shallow" unit: the directory as entry plus the
// perishable exclude "-p /dir/*/*", so what lies deeper is protected from its --delete, while a
// subdirectory that vanished from the source is still removed whole). Directories heavier than
// half a stream's share become shallow units and their subdirectories units of their own. Large
// files are units of their own, sent by an in-place rsync; the owner of their directory
// excludes them by name. The volume root is no unit: its own entries are listed one by one (the
// root is never sent, so an unprivileged receiver never tries to change it), and the deletions
// at the top level and the root's attributes are left to the final root pass (rsync.go).
//
// Units are balanced over the streams, largest first onto the lightest. Within a stream, a unit
// below one of the stream's shallow units cannot share its rsync (the shallow unit's filter
// would hide it), so nesting levels become consecutive rsync runs. Hard-linked files must be
// sent by one rsync to stay linked: when links cross directories, the volume is split at the
// top level only (whole subtrees, freely merged) and units sharing an inode are merged.

const (
	// bigFileMin: regular files at least this large get a stream of their own choosing.
	bigFileMin = 64 << 20
	// entryCost is what one entry costs compared to file data, in bytes: creating a small file
	// on the target costs about as much time as copying this many bytes.
	entryCost = 32 << 10
	// minUnitWeight keeps small volumes from being cut into many tiny units (each shallow
	// unit is a filter rule every file of its stream is matched against): about 2,000 small
	// files or 64 MiB.
	minUnitWeight = 64 << 20
)

// streamJob is one rsync process of the copy phase.
type streamJob struct {
	Stream int // which parallel stream runs it (0-based)
	// Entries are paths relative to the source root for --files-from; directories are recursed,
	// unless Exact.
	Entries []string
	// Exact: the entries are a re-stage's list (restage.go): each entry alone, directories not
	// recursed, and entries the source no longer has are deleted on the target.
	Exact bool
	// Rules are rsync filter rules (without line ends) this job needs.
	Rules  []string
	Big    bool // carries large files only
	Sparse bool // carries at least one sparse file
	Bytes  int64
	Files  int64 // regular files
	Weight int64
}

// streamPlan is the result of walking the source.
type streamPlan struct {
	Jobs       []*streamJob
	Streams    int
	Bytes      int64 // regular file bytes in the volume
	Files      int64 // regular files in the volume
	Entries    int64 // all entries (files, directories, links, …), root excluded
	Hardlinked bool
	// ACLs and Xattrs: some entry carries a POSIX ACL / an extended attribute that rsync would
	// copy (security.* labels and ACLs aside). Without any, rsync is spared the work of
	// reading and comparing them for every file.
	ACLs, Xattrs bool
	// ReadOnlyDirs: some directory lacks owner write permission. An unprivileged receiver can
	// only fill such a directory before rsync sets its final mode, which parallel streams
	// cannot order; the sender then uses one stream.
	ReadOnlyDirs bool
	// Devices lists block and character devices (up to maxListedDevices, in no particular
	// order); DeviceCount counts them all. A server that cannot create them skips them.
	Devices     []string
	DeviceCount int64
}

// maxListedDevices bounds the device paths a plan (and so a report) carries.
const maxListedDevices = 100

// dirNode is one directory of the source tree, with aggregates only (a million files must not
// cost a million structs).
type dirNode struct {
	path     string // relative to the root, "" for the root
	children []*dirNode
	files    int64 // regular files directly inside, large ones excluded
	bytes    int64 // their size
	others   int64 // other non-directory entries directly inside
	sparse   bool  // a sparse regular file directly inside
	big      []bigFile
	subtree  int64    // weight of the subtree, large files excluded
	subBig   []string // large files anywhere in the subtree (paths), for deep units' excludes
	unit     *planUnit
}

type bigFile struct {
	path string
	size int64
}

type planUnit struct {
	parent  *planUnit // union-find (hard links)
	path    string    // the directory the unit starts at ("" for the root's own entries)
	shallow bool
	entries []string
	rules   []string
	big     []bigFile
	bytes   int64
	files   int64
	weight  int64
	sparse  bool
}

func (u *planUnit) find() *planUnit {
	for u.parent != nil {
		if u.parent.parent != nil {
			u.parent = u.parent.parent
		}
		u = u.parent
	}
	return u
}

// union merges b into a. Only whole-subtree units are merged (see planStreams), so the merged
// unit's rules never exclude what another of its entries needs.
func union(a, b *planUnit) {
	a, b = a.find(), b.find()
	if a == b {
		return
	}
	b.parent = a
	a.entries = append(a.entries, b.entries...)
	a.rules = append(a.rules, b.rules...)
	a.big = append(a.big, b.big...)
	a.bytes += b.bytes
	a.files += b.files
	a.weight += b.weight
	a.sparse = a.sparse || b.sparse
	b.entries, b.rules, b.big = nil, nil, nil
}

type devIno struct{ dev, ino uint64 }

// planOptions tune planStreams.
type planOptions struct {
	Streams int
	// UnitWeight overrides the largest weight of a whole-subtree unit (tests use a tiny one
	// to split every directory).
	UnitWeight int64
	// ProbeXattrs looks for ACLs and extended attributes (when both sides could copy them).
	ProbeXattrs bool
}

// planStreams walks root and splits it into at most o.Streams parallel streams.
func planStreams(root string, o planOptions) (*streamPlan, error) {
	streams := max(o.Streams, 1)
	w := &walker{probeXattrs: o.ProbeXattrs}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return nil, fmt.Errorf("source %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("source %s is not a directory", root)
	}
	w.dev = st.Dev
	if w.probeXattrs {
		w.probe(root, nil) // the root pass copies the root's own
	}
	top, err := w.walkTree(root)
	if err != nil {
		return nil, err
	}
	bigs := bigFiles(top)
	p := &streamPlan{Streams: streams, Bytes: w.bytes.Load(), Files: w.files.Load(), Entries: w.entries.Load(),
		Hardlinked: len(w.links) > 0, ReadOnlyDirs: w.readOnlyDirs.Load(), ACLs: w.acls.Load(), Xattrs: w.xattrs.Load(),
		Devices: w.devices, DeviceCount: w.devCount}
	sort.Strings(p.Devices)

	total := top.subtree
	for _, b := range bigs {
		total += b.size + entryCost
	}
	// Units no heavier than half a stream's share balance well; a subtree that light is
	// sent whole by one rsync (one --files-from entry, no filter rules).
	maxUnit := max(total/int64(2*streams), minUnitWeight)
	if o.UnitWeight > 0 {
		maxUnit = o.UnitWeight
	}
	if len(w.linkPairs) > 0 {
		// Hard links between directories: they must travel in one rsync, and a shallow unit
		// cannot share an rsync with units below it (its filter would hide them). Split at the
		// top level only, where all units are whole subtrees and can be merged freely.
		maxUnit = math.MaxInt64
	}
	var units []*planUnit
	newUnit := func() *planUnit { u := &planUnit{}; units = append(units, u); return u }

	// The root's own non-directory entries: listed one by one (the root itself is never an
	// entry: see the root pass).
	rootUnit := newUnit()
	top.unit = rootUnit
	rootUnit.entries = w.rootFiles
	rootUnit.files, rootUnit.bytes, rootUnit.sparse = top.files, top.bytes, top.sparse
	rootUnit.weight = top.bytes + (top.files+top.others)*entryCost

	var assign func(d *dirNode)
	assign = func(d *dirNode) {
		u := newUnit()
		u.path = d.path
		if d.subtree <= maxUnit || len(d.children) == 0 {
			// Deep: the whole subtree.
			u.entries = []string{d.path}
			for _, b := range d.subBig {
				u.rules = append(u.rules, bigFileExcludes(b)...)
			}
			markSubtree(d, u)
			u.weight = d.subtree
			sumSubtree(d, u)
			return
		}
		// Shallow: d's own entries; its subdirectories are units of their own.
		u.shallow = true
		u.entries = []string{d.path}
		u.rules = []string{"-p /" + globEscape(d.path, true) + "/*/*"}
		for _, b := range d.big {
			u.rules = append(u.rules, bigFileExcludes(b.path)...)
		}
		d.unit = u
		u.files, u.bytes, u.sparse = d.files, d.bytes, d.sparse
		u.weight = d.bytes + (d.files+d.others+int64(len(d.children))+1)*entryCost
		for _, c := range d.children {
			assign(c)
		}
	}
	for _, c := range top.children {
		assign(c)
	}
	for _, b := range bigs {
		u := newUnit()
		u.big = []bigFile{b}
		u.bytes, u.files, u.weight = b.size, 1, b.size+entryCost
	}
	// Hard links across units: merge.
	for _, pair := range w.linkPairs {
		union(pair[0].unit, pair[1].unit)
	}

	var roots []*planUnit
	for _, u := range units {
		if u.parent == nil && (len(u.entries) > 0 || len(u.big) > 0) {
			roots = append(roots, u)
		}
	}
	// Largest first, each onto the lightest stream.
	sort.SliceStable(roots, func(i, j int) bool { return roots[i].weight > roots[j].weight })
	bins := make([][]*planUnit, streams)
	loads := make([]int64, streams)
	for _, u := range roots {
		k := 0
		for i := range loads {
			if loads[i] < loads[k] {
				k = i
			}
		}
		bins[k] = append(bins[k], u)
		loads[k] += u.weight
	}
	for k, bin := range bins {
		p.Jobs = append(p.Jobs, binJobs(k, bin)...)
	}
	return p, nil
}

// binJobs turns one stream's units into rsync jobs. Large files go in one job per directory:
// the job lists the directory and includes only its large files and their temporary names
// (so it also deletes a temporary file a killed rsync left behind), excluding the rest; at the
// root, where the directory cannot be listed (see the root pass), the files themselves. The
// other units go in as few jobs as possible such that no job holds a unit below one of its own
// shallow units (whose filter rule would hide it): levels of nesting become consecutive jobs.
func binJobs(stream int, bin []*planUnit) []*streamJob {
	var bigDirs []string
	bigByDir := map[string]*streamJob{}
	levels := map[int]*streamJob{}
	for _, u := range bin {
		for _, f := range u.big {
			dir := path.Dir(f.path)
			if dir == "." {
				dir = ""
			}
			j := bigByDir[dir]
			if j == nil {
				j = &streamJob{Stream: stream, Big: true}
				if dir != "" {
					j.Entries = []string{dir}
				}
				bigByDir[dir] = j
				bigDirs = append(bigDirs, dir)
			}
			if dir == "" {
				j.Entries = append(j.Entries, f.path)
			} else {
				for _, r := range bigFileExcludes(f.path) {
					j.Rules = append(j.Rules, "+"+strings.TrimPrefix(r, "-"))
				}
			}
			j.Bytes += f.size
			j.Files++
			j.Weight += f.size + entryCost
		}
		if len(u.entries) == 0 {
			continue
		}
		level := 0
		if u.path != "" {
			for _, s := range bin {
				if s != u && s.shallow && strings.HasPrefix(u.path, s.path+"/") {
					level++
				}
			}
		}
		j := levels[level]
		if j == nil {
			j = &streamJob{Stream: stream}
			levels[level] = j
		}
		j.Entries = append(j.Entries, u.entries...)
		j.Rules = append(j.Rules, u.rules...)
		j.Sparse = j.Sparse || u.sparse
		j.Bytes += u.bytes
		j.Files += u.files
		j.Weight += u.weight - bigWeight(u.big)
	}
	var jobs []*streamJob
	for _, dir := range bigDirs {
		j := bigByDir[dir]
		if dir != "" {
			// Everything else in the directory belongs to its owner.
			j.Rules = append(j.Rules, "- /"+globEscape(dir, true)+"/*")
		}
		jobs = append(jobs, j)
	}
	for level := 0; level < len(bin)+1; level++ {
		if j := levels[level]; j != nil {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// bigFileExcludes are the rules that keep a directory's owner away from one of its large
// files and from the temporary file rsync writes it to while it arrives (".name.XXXXXX", the
// name without a leading dot and cut to fit NAME_MAX, as rsync's get_tmpname makes it): the
// owner's --delete would otherwise remove a transfer in progress.
func bigFileExcludes(p string) []string {
	dir, name := path.Split(p)
	tmp := strings.TrimPrefix(name, ".")
	const maxTmpBase = 255 - 1 - len(".XXXXXX") - 1 // rsync: NAME_MAX - 1 - suffix, minus the NUL
	tmpRule := "- /" + globEscape(dir+"."+tmp, true) + ".??????"
	if len(tmp) > maxTmpBase-8 {
		// A name that long is cut (and, in newer rsyncs, cut on a character boundary):
		// protect every name that starts alike.
		tmpRule = "- /" + globEscape(dir+"."+tmp[:maxTmpBase-8], true) + "*"
	}
	return []string{"- /" + globEscape(p, false), tmpRule}
}

func bigWeight(bs []bigFile) (w int64) {
	for _, b := range bs {
		w += b.size + entryCost
	}
	return w
}

func markSubtree(d *dirNode, u *planUnit) {
	d.unit = u
	for _, c := range d.children {
		markSubtree(c, u)
	}
}

func sumSubtree(d *dirNode, u *planUnit) {
	u.files += d.files
	u.bytes += d.bytes
	u.sparse = u.sparse || d.sparse
	for _, c := range d.children {
		sumSubtree(c, u)
	}
}

// walker collects the source tree's aggregates. Directories are read in parallel (the walk is
// a good part of a re-stage's time); the tree's shape and sums do not depend on the order.
type walker struct {
	dev         uint64
	probeXattrs bool

	entries, files, bytes      atomic.Int64
	readOnlyDirs, acls, xattrs atomic.Bool
	rootFiles                  []string // written by the root directory's reader only

	mu        sync.Mutex
	links     map[devIno]*dirNode // first directory seen holding each multiply-linked inode
	linkPairs [][2]*dirNode       // directories that share an inode
	devices   []string            // up to maxListedDevices
	devCount  int64
	err       error
}

// walkers is how many directories are read at once.
var walkers = max(2, runtime.GOMAXPROCS(0))

// walkTree reads the tree below root. Subdirectories of a directory are read by spare
// goroutines, or by the reader itself when all are busy.
func (w *walker) walkTree(root string) (*dirNode, error) {
	if w.links == nil {
		w.links = map[devIno]*dirNode{}
	}
	top := &dirNode{path: ""}
	sem := make(chan struct{}, walkers-1)
	var wg sync.WaitGroup
	var visit func(d *dirNode, abs string)
	visit = func(d *dirNode, abs string) {
		defer wg.Done()
		for _, c := range w.readDir(d, abs) {
			wg.Add(1)
			childAbs := abs + "/" + path.Base(c.path)
			select {
			case sem <- struct{}{}:
				go func() { visit(c, childAbs); <-sem }()
			default:
				visit(c, childAbs)
			}
		}
	}
	wg.Add(1)
	visit(top, root)
	wg.Wait()
	if w.err != nil {
		return nil, w.err
	}
	sumTree(top)
	return top, nil
}

func (w *walker) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *walker) done() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err != nil
}

// readDir reads one directory: it records its entries in d and returns its subdirectories
// (not yet read). It opens the directory once and stats entries relative to it.
func (w *walker) readDir(d *dirNode, abs string) []*dirNode {
	if w.done() {
		return nil
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) || d.path == "" { // a directory that vanished: rsync will tell
			w.fail(fmt.Errorf("reading source directory %s: %w", abs, err))
		}
		return nil
	}
	f := os.NewFile(uintptr(fd), abs)
	defer f.Close()
	var subdirs []*dirNode
	var xbuf []byte
	for {
		names, err := f.Readdirnames(4096)
		for _, name := range names {
			if d.path == "" && name == "lost+found" {
				continue // never transferred (see --filter in commonArgs)
			}
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue // vanished while we looked: rsync will tell (code 24)
				}
				w.fail(fmt.Errorf("reading %s: %w", path.Join(abs, name), err))
				return nil
			}
			w.entries.Add(1)
			child := path.Join(d.path, name)
			if w.probeXattrs {
				xbuf = w.probeAt(fd, abs, name, xbuf)
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				if st.Dev != w.dev {
					d.others++ // a mount point: rsync -x sends the directory, not its contents
					continue
				}
				if st.Mode&unix.S_IWUSR == 0 {
					w.readOnlyDirs.Store(true)
				}
				subdirs = append(subdirs, &dirNode{path: child})
			case unix.S_IFREG:
				w.files.Add(1)
				w.bytes.Add(st.Size)
				sparse := st.Blocks*512 < st.Size
				w.hardLink(d, &st)
				if st.Size >= bigFileMin && st.Nlink == 1 && !sparse {
					d.big = append(d.big, bigFile{path: child, size: st.Size})
					continue
				}
				d.files++
				d.bytes += st.Size
				d.sparse = d.sparse || sparse
				if d.path == "" {
					w.rootFiles = append(w.rootFiles, name)
				}
			default:
				// Symlinks, devices and FIFOs can be hard-linked too (rsync keeps them so).
				w.hardLink(d, &st)
				d.others++
				if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
					w.mu.Lock()
					w.devCount++
					if len(w.devices) < maxListedDevices {
						w.devices = append(w.devices, child)
					}
					w.mu.Unlock()
				}
				if d.path == "" {
					w.rootFiles = append(w.rootFiles, name)
				}
			}
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			w.fail(fmt.Errorf("reading source directory %s: %w", abs, err))
			return nil
		}
	}
	sort.Slice(subdirs, func(i, j int) bool { return subdirs[i].path < subdirs[j].path })
	d.children = subdirs
	return subdirs
}

// hardLink records a multiply-linked inode found in directory d: hard links between
// directories must travel in one rsync.
func (w *walker) hardLink(d *dirNode, st *unix.Stat_t) {
	if st.Nlink < 2 {
		return
	}
	key := devIno{uint64(st.Dev), st.Ino}
	w.mu.Lock()
	defer w.mu.Unlock()
	if first, ok := w.links[key]; !ok {
		w.links[key] = d
	} else if first != d {
		w.linkPairs = append(w.linkPairs, [2]*dirNode{first, d})
	}
}

// listxattrat is listxattrat(2) (Linux 6.13) without following a final symlink.
func listxattrat(dirfd int, name string, buf []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	var bufp unsafe.Pointer
	if len(buf) > 0 {
		bufp = unsafe.Pointer(&buf[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(bufp), uintptr(len(buf)), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// sumTree fills in the subtree aggregates once every directory is read.
func sumTree(d *dirNode) {
	d.subtree = d.bytes + (d.files+d.others+1)*entryCost
	for _, c := range d.children {
		sumTree(c)
		d.subtree += c.subtree
		d.subBig = append(d.subBig, c.subBig...)
	}
	for _, b := range d.big {
		d.subBig = append(d.subBig, b.path)
	}
}

// bigFiles lists the large files of the tree, in tree order.
func bigFiles(d *dirNode) []bigFile {
	out := append([]bigFile(nil), d.big...)
	for _, c := range d.children {
		out = append(out, bigFiles(c)...)
	}
	return out
}

// probe notes whether the entry at p carries ACLs or extended attributes rsync would copy.
// buf is reused between calls.
func (w *walker) probe(p string, buf []byte) []byte {
	return w.probeAt(unix.AT_FDCWD, "", p, buf)
}

// listxattratMissing is set once the kernel answered ENOSYS to listxattrat (before Linux 6.13).
var listxattratMissing atomic.Bool

// probeAt is probe for name in the directory open as dirfd (abs is its path).
func (w *walker) probeAt(dirfd int, abs, name string, buf []byte) []byte {
	if w.acls.Load() && w.xattrs.Load() {
		return buf
	}
	acls, xattrs, buf := copiedXattrs(dirfd, abs, name, buf)
	if acls {
		w.acls.Store(true)
	}
	if xattrs {
		w.xattrs.Store(true)
	}
	return buf
}

// copiedXattrs reports whether name, in the directory open as dirfd (abs is its path; dirfd
// AT_FDCWD and abs "" for a path), carries a POSIX ACL or an extended attribute rsync would
// copy (security.* labels and other system.* names aside). listxattrat spares the kernel a
// path walk from the root for every entry. buf is reused between calls.
func copiedXattrs(dirfd int, abs, name string, buf []byte) (acls, xattrs bool, _ []byte) {
	if buf == nil {
		buf = make([]byte, 1024)
	}
	list := func(b []byte) (int, error) {
		if !listxattratMissing.Load() {
			n, err := listxattrat(dirfd, name, b)
			if !errors.Is(err, unix.ENOSYS) {
				return n, err
			}
			listxattratMissing.Store(true)
		}
		p := name
		if abs != "" {
			p = abs + "/" + name
		}
		return unix.Llistxattr(p, b)
	}
	n, err := list(buf)
	if errors.Is(err, unix.ERANGE) {
		if size, err := list(nil); err == nil {
			buf = make([]byte, size+1024)
			n, err = list(buf)
		}
	}
	if err != nil || n <= 0 {
		return false, false, buf
	}
	for _, attr := range strings.Split(string(buf[:n]), "\x00") {
		switch {
		case attr == "" || strings.HasPrefix(attr, "security."):
		case attr == "system.posix_acl_access" || attr == "system.posix_acl_default":
			acls = true
		case strings.HasPrefix(attr, "system."):
		default:
			xattrs = true
		}
	}
	return acls, xattrs, buf
}

// globEscape makes a path safe inside an rsync filter pattern. rsync treats a backslash as an
// escape only in patterns that contain a wildcard; wild says the pattern will (because the
// caller appends one), otherwise the path is escaped only if it has wildcard characters itself.
func globEscape(p string, wild bool) string {
	if !wild && !strings.ContainsAny(p, "*?[") {
		return p
	}
	var b strings.Builder
	for _, r := range p {
		switch r {
		case '*', '?', '[', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
