package datamover

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"sort"
	"strings"

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
	// Entries are paths relative to the source root for --files-from; directories are recursed.
	Entries []string
	// Rules are rsync filter rules (without line ends) this job needs.
	Rules   []string
	Inplace bool // large files, written in place
	Sparse  bool // carries at least one sparse file
	Bytes   int64
	Files   int64 // regular files
	Weight  int64
}

// transferPlan is the result of walking the source.
type transferPlan struct {
	Jobs       []*streamJob
	Streams    int
	Bytes      int64 // regular file bytes in the volume
	Files      int64 // regular files in the volume
	Entries    int64 // all entries (files, directories, links, …), root excluded
	Hardlinked bool
	// ReadOnlyDirs: some directory lacks owner write permission. An unprivileged receiver can
	// only fill such a directory before rsync sets its final mode, which parallel streams
	// cannot order; the sender then uses one stream.
	ReadOnlyDirs bool
}

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

// union merges b into a. Only whole-subtree units are merged (see planTransfer), so the merged
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

// planOptions tune planTransfer.
type planOptions struct {
	Streams int
	// UnitWeight overrides the largest weight of a whole-subtree unit (tests use a tiny one
	// to split every directory).
	UnitWeight int64
}

// planTransfer walks root and splits it into at most o.Streams parallel streams.
func planTransfer(root string, o planOptions) (*transferPlan, error) {
	streams := max(o.Streams, 1)
	w := &walker{links: map[devIno]*dirNode{}}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return nil, fmt.Errorf("source %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("source %s is not a directory", root)
	}
	w.dev = st.Dev
	top, err := w.walk(root, "")
	if err != nil {
		return nil, err
	}
	p := &transferPlan{Streams: streams, Bytes: w.bytes, Files: w.files, Entries: w.entries,
		Hardlinked: len(w.links) > 0, ReadOnlyDirs: w.readOnlyDirs}

	total := top.subtree
	for _, b := range w.bigs {
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
				u.rules = append(u.rules, "- /"+globEscape(b, false))
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
			u.rules = append(u.rules, "- /"+globEscape(b.path, false))
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
	for _, b := range w.bigs {
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

// binJobs turns one stream's units into rsync jobs: the large files in one in-place job, the
// rest in as few jobs as possible such that no job holds a unit below one of its own shallow
// units (whose filter rule would hide it). Levels of nesting become consecutive jobs.
func binJobs(stream int, bin []*planUnit) []*streamJob {
	var big *streamJob
	levels := map[int]*streamJob{}
	for _, u := range bin {
		for _, f := range u.big {
			if big == nil {
				big = &streamJob{Stream: stream, Inplace: true}
			}
			big.Entries = append(big.Entries, f.path)
			big.Bytes += f.size
			big.Files++
			big.Weight += f.size + entryCost
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
	if big != nil {
		jobs = append(jobs, big)
	}
	for level := 0; level < len(bin)+1; level++ {
		if j := levels[level]; j != nil {
			jobs = append(jobs, j)
		}
	}
	return jobs
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

// walker collects the source tree's aggregates.
type walker struct {
	dev          uint64
	bytes, files int64
	entries      int64
	rootFiles    []string
	bigs         []bigFile
	links        map[devIno]*dirNode // first directory seen holding each multiply-linked inode
	linkPairs    [][2]*dirNode       // directories that share an inode
	readOnlyDirs bool
}

// walk reads directory abs (rel to the root) and its subtree. It opens each directory once
// and stats its entries relative to that descriptor (no path lookups from the root).
func (w *walker) walk(abs, rel string) (*dirNode, error) {
	d := &dirNode{path: rel}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reading source directory %s: %w", abs, err)
	}
	f := os.NewFile(uintptr(fd), abs)
	defer f.Close()
	var subdirs []string
	for {
		names, err := f.Readdirnames(4096)
		for _, name := range names {
			if rel == "" && name == "lost+found" {
				continue // never transferred (see --filter in commonArgs)
			}
			w.entries++
			var st unix.Stat_t
			if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					w.entries-- // vanished while we looked: rsync will tell (code 24)
					continue
				}
				return nil, fmt.Errorf("reading %s: %w", path.Join(abs, name), err)
			}
			child := path.Join(rel, name)
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				if st.Dev != w.dev {
					d.others++ // a mount point: rsync -x sends the directory, not its contents
					continue
				}
				if st.Mode&unix.S_IWUSR == 0 {
					w.readOnlyDirs = true
				}
				subdirs = append(subdirs, name)
			case unix.S_IFREG:
				w.files++
				w.bytes += st.Size
				sparse := st.Blocks*512 < st.Size
				if st.Nlink > 1 {
					key := devIno{uint64(st.Dev), st.Ino}
					if first, ok := w.links[key]; !ok {
						w.links[key] = d
					} else if first != d {
						w.linkPairs = append(w.linkPairs, [2]*dirNode{first, d})
					}
				}
				if st.Size >= bigFileMin && st.Nlink == 1 && !sparse {
					b := bigFile{path: child, size: st.Size}
					d.big = append(d.big, b)
					w.bigs = append(w.bigs, b)
					continue
				}
				d.files++
				d.bytes += st.Size
				d.sparse = d.sparse || sparse
				if rel == "" {
					w.rootFiles = append(w.rootFiles, name)
				}
			default:
				d.others++
				if rel == "" {
					w.rootFiles = append(w.rootFiles, name)
				}
			}
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading source directory %s: %w", abs, err)
		}
	}
	sort.Strings(subdirs)
	d.subtree = d.bytes + (d.files+d.others+1)*entryCost
	for _, name := range subdirs {
		c, err := w.walk(abs+"/"+name, path.Join(rel, name))
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return nil, err
		}
		d.children = append(d.children, c)
		d.subtree += c.subtree
		d.subBig = append(d.subBig, c.subBig...)
	}
	for _, b := range d.big {
		d.subBig = append(d.subBig, b.path)
	}
	return d, nil
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
