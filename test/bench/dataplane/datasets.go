package main

import (
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

func largeFiles(ctx context.Context, work string) (string, error) {
	return dataset(ctx, filepath.Join(work, "large"), func(dir string) error {
		for i := 0; i < 4; i++ {
			if err := writeRandom(filepath.Join(dir, fmt.Sprintf("file%d.bin", i)), 1<<30, uint64(i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// smallFiles: 100,000 files of 4 KiB in 100 directories of 1,000, the shape of a store that
// spreads its objects over subdirectories.
func smallFiles(ctx context.Context, work string) (string, error) {
	return dataset(ctx, filepath.Join(work, "small"), func(dir string) error {
		return manyFiles(ctx, dir, 100_000, 1000, 4096)
	})
}

// tinyFiles: n files of 100 bytes, 1,000 per directory: what the file lists cost.
func tinyFiles(ctx context.Context, work string, n int) (string, error) {
	return dataset(ctx, filepath.Join(work, fmt.Sprintf("tiny-%d", n)), func(dir string) error {
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

// changeFiles rewrites every hundredth regular file below dir (new content, new mtime): 1 %.
func changeFiles(dir string, round int) (int, error) {
	rng := rand.NewChaCha8([32]byte{byte(round), 99})
	n, changed := 0, 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		n++
		if n%100 != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		buf := make([]byte, fi.Size())
		_, _ = rng.Read(buf)
		changed++
		return os.WriteFile(p, buf, fi.Mode().Perm())
	})
	return changed, err
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
