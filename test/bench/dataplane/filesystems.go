package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Each copy goes into a fresh filesystem, as into a newly provisioned volume: nothing left by
// an earlier run (ext4 is slow to create files right after many were deleted, which would
// penalise whichever tool runs next), and every tool starts from the same state.
//
//   - "disk": a new ext4 on a loop device (direct I/O) over a file on the machine's disk.
//   - "memory": a new tmpfs: the tools' own cost, without a disk.
//
// Sources live in a tmpfs too, so reading them costs the same for every tool (the page cache
// of this machine is trimmed by the hypervisor and cannot be relied on to keep them).

type target struct {
	name  string // "disk" or "memory"
	mount string
	image string // ext4 only
	loop  string
	size  string
}

func newTarget(work, name, size string) *target {
	t := &target{name: name, mount: filepath.Join(work, "mnt-"+name), size: size}
	if name == "disk" {
		t.image = filepath.Join(work, "target-ext4.img")
	}
	return t
}

// fresh unmounts the previous filesystem and mounts an empty one; it returns the target dir.
func (t *target) fresh(ctx context.Context) (string, error) {
	if err := t.release(ctx); err != nil {
		return "", err
	}
	if err := os.MkdirAll(t.mount, 0o755); err != nil {
		return "", err
	}
	switch t.name {
	case "memory":
		if err := runQuiet(ctx, nil, "", "mount", "-t", "tmpfs", "-o", "size="+t.size, "ferry-bench", t.mount); err != nil {
			return "", err
		}
	case "disk":
		_ = os.Remove(t.image)
		if err := runQuiet(ctx, nil, "", "truncate", "-s", t.size, t.image); err != nil {
			return "", err
		}
		if err := runQuiet(ctx, nil, "", "mkfs.ext4", "-q", "-F", "-i", "8192", "-E", "lazy_itable_init=0,lazy_journal_init=0", t.image); err != nil {
			return "", err
		}
		out, err := exec.CommandContext(ctx, "losetup", "--direct-io=on", "-f", "--show", t.image).Output()
		if err != nil {
			return "", fmt.Errorf("losetup: %w", err)
		}
		t.loop = strings.TrimSpace(string(out))
		if err := runQuiet(ctx, nil, "", "mount", t.loop, t.mount); err != nil {
			return "", err
		}
	}
	dst := filepath.Join(t.mount, "volume")
	return dst, os.Mkdir(dst, 0o755)
}

// release unmounts the filesystem and frees its loop device and image.
func (t *target) release(ctx context.Context) error {
	if isMounted(t.mount) {
		// The rsync daemon's receiver for the last copy can outlive the client by a moment (on
		// one core, under taskset, long enough to be seen): give it time to leave the target.
		for tries := 0; ; tries++ {
			err := runQuiet(ctx, nil, "", "umount", t.mount)
			if err == nil {
				break
			}
			if tries == 50 || !strings.Contains(err.Error(), "busy") {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if t.loop != "" {
		if err := runQuiet(ctx, nil, "", "losetup", "-d", t.loop); err != nil {
			return err
		}
		t.loop = ""
	}
	if t.image != "" {
		_ = os.Remove(t.image)
	}
	return nil
}

// memorySource copies a dataset into a tmpfs (once) and returns its path there.
type memorySource struct {
	mount   string
	current string
}

func (m *memorySource) load(ctx context.Context, dataset, size string) (string, error) {
	dir := filepath.Join(m.mount, filepath.Base(dataset))
	if m.current == dataset {
		return dir, nil
	}
	if err := m.release(ctx); err != nil {
		return "", err
	}
	if err := os.MkdirAll(m.mount, 0o755); err != nil {
		return "", err
	}
	if err := runQuiet(ctx, nil, "", "mount", "-t", "tmpfs", "-o", "size="+size, "ferry-bench-src", m.mount); err != nil {
		return "", err
	}
	if err := runQuiet(ctx, nil, "", "cp", "-a", dataset, dir); err != nil {
		return "", err
	}
	m.current = dataset
	return dir, nil
}

func (m *memorySource) release(ctx context.Context) error {
	m.current = ""
	if isMounted(m.mount) {
		return runQuiet(ctx, nil, "", "umount", m.mount)
	}
	return nil
}

func isMounted(dir string) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == abs {
			return true
		}
	}
	return false
}
