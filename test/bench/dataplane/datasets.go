package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// Datasets are generated once into the work directory and reused by later runs (a marker file
// says a dataset is complete). File contents are pseudo-random: incompressible, like the data
// of most volumes worth migrating, and no tool can shortcut them.

// datasets scales the datasets for a quick trial run (-scale): file counts of the many-file
// sets, and sizes of the big files and the block device. A scaled dataset has its own directory.
type datasets struct {
	work  string
	scale float64
}

func (d datasets) dir(name string) string {
	if d.scale != 1 {
		name += fmt.Sprintf("-scale%g", d.scale)
	}
	return filepath.Join(d.work, name)
}

// count scales a number of files.
func (d datasets) count(n int) int { return max(1, int(float64(n)*d.scale)) }

// bigFile is the size of the large files, the one big file and the block device: 1 GiB, scaled
// to whole MiB.
func (d datasets) bigFile() int64 { return max(1, int64(1024*d.scale)) << 20 }

// large: 4 big files.
func (d datasets) large(ctx context.Context) (string, error) {
	return dataset(ctx, d.dir("large"), func(dir string) error {
		for i := 0; i < 4; i++ {
			if err := writeRandom(filepath.Join(dir, fmt.Sprintf("file%d.bin", i)), d.bigFile(), uint64(i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// one: a single big file, which ferry cannot split over its streams.
func (d datasets) one(ctx context.Context) (string, error) {
	return dataset(ctx, d.dir("one"), func(dir string) error {
		return writeRandom(filepath.Join(dir, "file.bin"), d.bigFile(), 10)
	})
}

// small: 100,000 files of 4 KiB in directories of 1,000, the shape of a store that spreads its
// objects over subdirectories.
func (d datasets) small(ctx context.Context) (string, error) {
	return dataset(ctx, d.dir("small"), func(dir string) error {
		return manyFiles(ctx, dir, d.count(100_000), 1000, 4096)
	})
}

// tiny: n files (already scaled) of 100 bytes, 1,000 per directory: what the file lists cost.
func (d datasets) tiny(ctx context.Context, n int) (string, error) {
	return dataset(ctx, filepath.Join(d.work, fmt.Sprintf("tiny-%d", n)), func(dir string) error {
		return manyFiles(ctx, dir, n, 1000, 100)
	})
}

func dataset(ctx context.Context, dir string, fill func(dir string) error) (string, error) {
	marker := dir + ".complete"
	if _, err := os.Stat(marker); err == nil {
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	logf("generating %s", dir)
	if err := fill(dir); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	logf("generated %s in %s", dir, time.Since(start).Round(time.Second))
	return dir, os.WriteFile(marker, nil, 0o644)
}

func manyFiles(ctx context.Context, dir string, n, perDir, size int) error {
	rng := rand.NewChaCha8([32]byte{42})
	buf := make([]byte, size)
	for i := 0; i < n; i++ {
		if i%perDir == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("d%04d", i/perDir)), 0o755); err != nil {
				return err
			}
		}
		_, _ = rng.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("d%04d/f%07d", i/perDir, i)), buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, rand.NewChaCha8([32]byte{byte(seed), 7}), size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// changeFiles rewrites every nth regular file below dir (new content, new mtime; n = 100: 1 %)
// and returns their paths relative to dir. The new mtime is at least a whole second past the
// old one: rsync's quick check (and so ferry's) compares whole seconds of same-size files, and
// on a small trial run the same files change again within the second.
func changeFiles(dir string, every int, seed int) ([]string, error) {
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 99})
	n := 0
	var changed []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n++
		if n%every != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		buf := make([]byte, fi.Size())
		_, _ = rng.Read(buf)
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		changed = append(changed, rel)
		if err := os.WriteFile(p, buf, fi.Mode().Perm()); err != nil {
			return err
		}
		mtime := time.Now().Truncate(time.Second)
		if last := fi.ModTime().Truncate(time.Second); !mtime.After(last) {
			mtime = last.Add(time.Second)
		}
		return os.Chtimes(p, time.Time{}, mtime)
	})
	return changed, err
}

// sameFiles checks that the files rels below src and dst have the same content: a re-stage
// that skipped the changed files would otherwise pass for a fast one.
func sameFiles(src, dst string, rels []string) error {
	for _, rel := range rels {
		a, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s differs between source and target after the re-stage", rel)
		}
	}
	return nil
}

// treeSize counts the regular files and bytes below dir.
func treeSize(dir string) (files, bytes int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		bytes += fi.Size()
		return nil
	})
	return files, bytes, err
}
