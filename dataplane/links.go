package dataplane

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Symlinks on a server that is not root.
//
// A root server chroots the rsync daemon into the volume: links are stored verbatim and the
// kernel resolves every path inside the volume. A server without root cannot chroot. Its data
// module then runs with "munge symlinks = yes": rsync stores every link it receives as
// mungePrefix + the exact target, so no link written by the client leads anywhere while the
// daemon serves (the client could otherwise plant a link to a directory outside the volume and
// write through it). Without munging, rsync sanitizes the targets instead (drops a leading "/",
// strips escaping "../"; flist.c, the same in 3.2.7 as in 3.5.0), which changes the data for
// good.
//
// When the pass is over (the last rsync of the client has ended), serve rewrites the links
// written in this pass to their exact targets (unmungeLinks). "Written in this pass" is decided
// by ctime, not by the prefix alone: a source link whose real target starts with mungePrefix
// arrives as mungePrefix+mungePrefix+…, and exactly one prefix comes off.
//
// The links already on the target are munged before serving (mungeLinks), whatever the rsync
// version:
//   - none of them leads out of the volume while the daemon resolves paths. rsync 3.5.0's
//     resolver refuses to follow them anyway (TestHostileClientWritesNothingOutside passes
//     without this step), but with its legacy one ("insecure links = yes", as older releases
//     behave) a file was written outside through a link planted in an earlier pass;
//   - a pass whose server was killed before it restored the links leaves munged links behind.
//     rsync compares a stored link with the munged form of the source's, so it would find such
//     a link up to date and never rewrite it; munged once more, it differs, is rewritten,
//     and comes out exact;
//   - it costs about what it saves: rsync leaves an unchanged munged link alone, where it
//     would rewrite every verbatim one (about 40 µs a link either way, measured).

// mungePrefix is rsync's SYMLINK_PREFIX (rsync.h).
const mungePrefix = "/rsyncd-munged/"

// linkRewrite is what rewriteLinks does with one symlink: the new target, or ok=false to leave
// it alone.
type linkRewrite func(target string, st *unix.Stat_t) (newTarget string, ok bool)

// mungeLinks prefixes the target of every symlink below dir (lost+found aside) with mungePrefix.
func mungeLinks(dir string) (int, error) {
	return rewriteLinks(dir, func(target string, _ *unix.Stat_t) (string, bool) {
		return mungePrefix + target, true
	})
}

// unmungeLinks strips one mungePrefix from every symlink below dir whose inode changed at or
// after since (the pass's start, on the kernel's coarse clock: the one file times come from).
func unmungeLinks(dir string, since unix.Timespec) (int, error) {
	return rewriteLinks(dir, func(target string, st *unix.Stat_t) (string, bool) {
		if !strings.HasPrefix(target, mungePrefix) || timespecBefore(st.Ctim, since) {
			return "", false
		}
		return strings.TrimPrefix(target, mungePrefix), true
	})
}

func timespecBefore(a, b unix.Timespec) bool {
	return a.Sec < b.Sec || (a.Sec == b.Sec && a.Nsec < b.Nsec)
}

// passClock is the time a pass starts, as file timestamps will see it: the kernel stamps
// inodes from its coarse clock, which lags the precise one by up to a tick, so a link written
// just after time.Now() could carry an earlier ctime.
func passClock() (unix.Timespec, error) {
	var ts unix.Timespec
	err := unix.ClockGettime(unix.CLOCK_REALTIME_COARSE, &ts)
	return ts, err
}

// brokenLink is one symlink inode to replace, with every path found for it (hard links).
type brokenLink struct {
	paths  []string
	target string
	st     unix.Stat_t
}

// rewriteLinks replaces the symlinks below dir (not following any, lost+found aside) for which
// rewrite returns a new target. Each keeps its owner, times and hard links; each directory
// touched keeps its mode and times. It returns the number of inodes rewritten.
func rewriteLinks(dir string, rewrite linkRewrite) (int, error) {
	type inode struct{ dev, ino uint64 }
	var (
		order []inode
		links = map[inode]*brokenLink{}
		// dirs holds the original mode and times of each directory holding a replaced link.
		dirs     = map[string]*unix.Stat_t{}
		dirOrder []string
		rootDev  uint64
	)
	saveDir := func(d string, st *unix.Stat_t) {
		if _, ok := dirs[d]; !ok {
			dirs[d] = st
			dirOrder = append(dirOrder, d)
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p == filepath.Join(dir, "lost+found") {
				return filepath.SkipDir // not ferry's (never copied, see commonArgs)
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if p == dir {
				rootDev = st.Dev
			} else if st.Dev != rootDev {
				return filepath.SkipDir // another mount: rsync -x never wrote there
			}
			// (An unprivileged rsync leaves its directories readable and searchable by itself
			// whatever the source's mode: the walk needs no more.)
			return nil
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		key := inode{uint64(st.Dev), st.Ino}
		if l, ok := links[key]; ok {
			l.paths = append(l.paths, p)
			return nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		newTarget, ok := rewrite(target, &st)
		if !ok {
			return nil
		}
		links[key] = &brokenLink{paths: []string{p}, target: newTarget, st: st}
		order = append(order, key)
		return nil
	})
	if err != nil {
		err = fmt.Errorf("looking for symlinks in %s: %w", dir, err)
	}

	// The directories are made writable for the change (a read-only directory from the source
	// is read-only on the target too), then get their mode and times back.
	for _, key := range order {
		if err != nil {
			break
		}
		for _, p := range links[key].paths {
			d := filepath.Dir(p)
			if _, ok := dirs[d]; ok {
				continue
			}
			var st unix.Stat_t
			if err = unix.Lstat(d, &st); err != nil {
				err = fmt.Errorf("%s: %w", d, err)
				break
			}
			saveDir(d, &st)
			if unix.Access(d, unix.W_OK) != nil {
				if err = unix.Chmod(d, st.Mode&0o7777|unix.S_IWUSR); err != nil {
					err = fmt.Errorf("making %s writable: %w", d, err)
					break
				}
			}
		}
	}
	firstErr := err
	done := 0
	for n, key := range order {
		if err != nil {
			break // the walk or the preparation failed: change nothing
		}
		if err := replaceLink(links[key], n); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		done++
	}
	// Deepest first: restoring a parent's mode may take away the access to its children.
	sort.SliceStable(dirOrder, func(i, j int) bool {
		return strings.Count(dirOrder[i], "/") > strings.Count(dirOrder[j], "/")
	})
	for _, d := range dirOrder {
		st := dirs[d]
		var now unix.Stat_t
		if err := unix.Lstat(d, &now); err == nil && now.Mode&0o7777 != st.Mode&0o7777 {
			if err := unix.Chmod(d, st.Mode&0o7777); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("restoring the mode of %s: %w", d, err)
			}
		}
		// The volume root may belong to root or to the fsGroup: a server that does not own it
		// cannot set its times (rsync could not either; the client then leaves them alone).
		err := unix.UtimesNanoAt(unix.AT_FDCWD, d, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil && !(d == dir && errors.Is(err, unix.EPERM)) && firstErr == nil {
			firstErr = fmt.Errorf("restoring the times of %s: %w", d, err)
		}
	}
	return done, firstErr
}

// replaceLink puts a new symlink with l.target, l's owner and times in place of each of l's
// paths, as one inode again. Each path always names a link: the new one is made under a
// temporary name and renamed over the old.
func replaceLink(l *brokenLink, n int) error {
	tmpName := func(p string, i int) string {
		return filepath.Join(filepath.Dir(p), ".ferry-link-"+strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(n)+"-"+strconv.Itoa(i))
	}
	first := l.paths[0]
	tmp := tmpName(first, 0)
	if err := unix.Symlink(l.target, tmp); err != nil {
		return fmt.Errorf("rewriting symlink %s: %w", first, err)
	}
	if err := unix.Lchown(tmp, int(l.st.Uid), int(l.st.Gid)); err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("rewriting symlink %s: setting its owner: %w", first, err)
	}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, tmp, []unix.Timespec{l.st.Atim, l.st.Mtim}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("rewriting symlink %s: setting its times: %w", first, err)
	}
	if err := unix.Rename(tmp, first); err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("rewriting symlink %s: %w", first, err)
	}
	for i, p := range l.paths[1:] {
		tmp := tmpName(p, i+1)
		// linkat without AT_SYMLINK_FOLLOW links the symlink itself.
		if err := unix.Linkat(unix.AT_FDCWD, first, unix.AT_FDCWD, tmp, 0); err != nil {
			return fmt.Errorf("rewriting symlink %s (a hard link of %s): %w", p, first, err)
		}
		if err := unix.Rename(tmp, p); err != nil {
			_ = unix.Unlink(tmp)
			return fmt.Errorf("rewriting symlink %s: %w", p, err)
		}
	}
	return nil
}

// syncFS flushes the filesystem holding dir.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// canMknod reports whether this process may create a character device in dir: it makes one
// (the null device's numbers) under a probe name and removes it, then puts dir's times back.
// Only root can at all; a root without CAP_MKNOD (a pod without the capability) cannot.
func canMknod(dir string) bool {
	if os.Geteuid() != 0 {
		return false
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false
	}
	probe := filepath.Join(dir, ".ferry-mknod-probe")
	if err := unix.Mknod(probe, unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		return false
	}
	_ = unix.Unlink(probe)
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, dir, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	return true
}
