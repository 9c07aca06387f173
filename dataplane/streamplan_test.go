package dataplane

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// treeSpec builds test trees: "dir/" makes a directory, "name=N" a file of N bytes,
// "name@N" a large file of N MiB allocated without writing, "name~N" a sparse file of N MiB,
// "a=>b" a hard link a of b, "a->t" a symlink.
func buildTree(t *testing.T, root string, spec ...string) {
	t.Helper()
	for _, s := range spec {
		switch {
		case strings.HasSuffix(s, "/"):
			require.NoError(t, os.MkdirAll(filepath.Join(root, s), 0o755))
		case strings.Contains(s, "=>"):
			a, b, _ := strings.Cut(s, "=>")
			require.NoError(t, os.Link(filepath.Join(root, b), filepath.Join(root, a)))
		case strings.Contains(s, "->"):
			a, b, _ := strings.Cut(s, "->")
			require.NoError(t, os.Symlink(b, filepath.Join(root, a)))
		default:
			name, size, kind := s, 0, byte('=')
			for _, k := range []byte{'=', '@', '~'} {
				if i := strings.LastIndexByte(s, k); i > 0 {
					name, kind = s[:i], k
					_, err := fmt.Sscan(s[i+1:], &size)
					require.NoError(t, err, s)
					break
				}
			}
			p := filepath.Join(root, name)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			f, err := os.Create(p)
			require.NoError(t, err)
			switch kind {
			case '=':
				_, err = f.Write(make([]byte, size))
			case '@':
				err = unix.Fallocate(int(f.Fd()), 0, 0, int64(size)<<20)
			case '~':
				err = f.Truncate(int64(size) << 20)
			}
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
	}
}

// sentBy simulates which jobs send path rel: the path lies at or below one of the job's
// entries, and neither it nor a directory on the way there is excluded by the job's rules
// (first match wins, as in rsync).
func sentBy(p *streamPlan, rel string) []int {
	var jobs []int
	for i, j := range p.Jobs {
		for _, e := range j.Entries {
			if rel != e && !strings.HasPrefix(rel, e+"/") {
				continue
			}
			excluded := false
			// Each step from the entry down to rel is checked against the rules.
			steps := []string{e}
			for q := e; q != rel; {
				next, _, _ := strings.Cut(strings.TrimPrefix(rel, q+"/"), "/")
				q = q + "/" + next
				steps = append(steps, q)
			}
			for _, q := range steps {
				if ruleExcludes(j.Rules, q) {
					excluded = true
					break
				}
			}
			if !excluded {
				jobs = append(jobs, i)
				break
			}
		}
	}
	return jobs
}

// ruleExcludes applies rsync's first-matching rule among the forms the planner writes:
// "+ /pattern", "- /pattern" and "-p /pattern" (anchored; * and ? stay within a name).
func ruleExcludes(rules []string, q string) bool {
	for _, r := range rules {
		verb, pattern, _ := strings.Cut(r, " ")
		pattern = strings.TrimPrefix(pattern, "/")
		var match bool
		if strings.ContainsAny(strings.ReplaceAll(pattern, `\\`, ""), "*?[") {
			m, err := path.Match(pattern, q)
			match = err == nil && m
		} else {
			match = pattern == q // no wildcard: rsync compares literally
		}
		if match {
			return verb != "+"
		}
	}
	return false
}

// checkCoverage asserts the plan's central rule: every non-directory entry is sent by exactly
// one job, hard-linked files by jobs of one stream, large files by in-place jobs.
func checkCoverage(t *testing.T, root string, p *streamPlan) {
	t.Helper()
	streamOfInode := map[uint64]int{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		rel, _ := filepath.Rel(root, path)
		if rel == "lost+found" {
			return filepath.SkipDir
		}
		if d.IsDir() {
			if rel != "." {
				// Whatever the target has there that the source has not must be deleted by
				// exactly one job (the root's entries are the root pass's).
				assert.Len(t, sentBy(p, rel+"/\x00extraneous"), 1, "deletions in %q must have one owner", rel)
			}
			return nil
		}
		jobs := sentBy(p, rel)
		if !assert.Len(t, jobs, 1, "%q must be sent by exactly one job", rel) {
			return nil
		}
		j := p.Jobs[jobs[0]]
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().IsRegular() {
			big := fi.Size() >= bigFileMin && st.Nlink == 1 && st.Blocks*512 >= fi.Size()
			assert.Equal(t, big, j.Big, "%q: large files, and only they, go in jobs of their own", rel)
			if st.Blocks*512 < fi.Size() {
				assert.True(t, j.Sparse, "%q is sparse: its job must use --sparse", rel)
			}
		}
		if st.Nlink > 1 {
			if s, ok := streamOfInode[st.Ino]; ok {
				assert.Equal(t, s, j.Stream, "%q: hard links stay in one stream", rel)
			}
			streamOfInode[st.Ino] = j.Stream
		}
		return nil
	})
	require.NoError(t, err)
	for _, j := range p.Jobs {
		assert.Less(t, j.Stream, p.Streams)
		assert.NotEmpty(t, j.Entries)
	}
}

func TestPlanTransfer(t *testing.T) {
	cases := []struct {
		name    string
		spec    []string
		opts    planOptions
		check   func(t *testing.T, p *streamPlan)
		entries int64
	}{
		{name: "empty volume", opts: planOptions{Streams: 4}, check: func(t *testing.T, p *streamPlan) {
			assert.Empty(t, p.Jobs, "only the root pass runs")
		}},
		{name: "small volume: whole top-level directories", opts: planOptions{Streams: 4},
			spec: []string{"a/x=10", "a/b/y=20", "c/z=30", "top=5", "link->a/x"},
			check: func(t *testing.T, p *streamPlan) {
				assert.Equal(t, int64(65), p.Bytes)
				assert.Equal(t, int64(4), p.Files)
				var entries []string
				for _, j := range p.Jobs {
					entries = append(entries, j.Entries...)
					assert.Empty(t, j.Rules, "whole subtrees need no filter rules")
				}
				assert.ElementsMatch(t, []string{"a", "c", "top", "link"}, entries, "the root itself is never an entry")
			}},
		{name: "fine split of a nested tree", opts: planOptions{Streams: 3, UnitWeight: 1},
			spec: []string{"a/1=1", "a/2=1", "a/b/3=1", "a/b/c/4=1", "a/b/c/d/5=1", "a/e/6=1", "f/7=1", "f/g/8=1", "9=1"},
			check: func(t *testing.T, p *streamPlan) {
				var rules []string
				for _, j := range p.Jobs {
					rules = append(rules, j.Rules...)
				}
				assert.Contains(t, rules, "-p /a/*/*", "a heavy directory is split: its own entries in one unit")
			}},
		{name: "large files stream in place", opts: planOptions{Streams: 4},
			spec: []string{"big1@64", "d/big2@65", "d/small=100", "d/e/big3@64", "d/e/f=1"},
			check: func(t *testing.T, p *streamPlan) {
				var big []string
				var rules []string
				for _, j := range p.Jobs {
					if j.Big {
						big = append(big, j.Entries...)
					}
					rules = append(rules, j.Rules...)
				}
				assert.ElementsMatch(t, []string{"big1", "d", "d/e"}, big, "the directories of large files (the root's files by name)")
				assert.Subset(t, rules, []string{"- /d/big2", "- /d/.big2.??????", "- /d/e/big3", "- /d/e/.big3.??????"},
					"the directories' owners leave them and their temporary files alone")
				assert.Subset(t, rules, []string{"+ /d/big2", "+ /d/.big2.??????", "- /d/*"})
				assert.Equal(t, int64((64+65+64)<<20+101), p.Bytes)
			}},
		{name: "hard links across directories share a stream", opts: planOptions{Streams: 4, UnitWeight: 1},
			spec: []string{"a/x=10", "b/y=10", "c/z=10", "d/w=10", "e/v=10", "a/l=>b/y", "e/l=>d/w", "top=>c/z"},
			check: func(t *testing.T, p *streamPlan) {
				assert.True(t, p.Hardlinked)
			}},
		{name: "sparse files need --sparse", opts: planOptions{Streams: 2},
			spec: []string{"a/holes~100", "b/plain=10"},
			check: func(t *testing.T, p *streamPlan) {
				for _, j := range p.Jobs {
					assert.Equal(t, j.Entries[0] == "a", j.Sparse, "only the job with the sparse file: %v", j.Entries)
				}
			}},
		{name: "lost+found at the root is left out", opts: planOptions{Streams: 2},
			spec: []string{"lost+found/x=1", "a/lost+found/y=1"},
			check: func(t *testing.T, p *streamPlan) {
				assert.Equal(t, int64(1), p.Files)
				require.Len(t, p.Jobs, 1)
				assert.Equal(t, []string{"a"}, p.Jobs[0].Entries)
			}},
		{name: "odd names are escaped in rules", opts: planOptions{Streams: 2, UnitWeight: 1},
			spec: []string{"we*ird/x=1", "we*ird/y=1", "we*ird/sub/z=1", "we*ird/sub/w=1", "back\\slash/q=1", "sp ace /\n#x=1"},
			check: func(t *testing.T, p *streamPlan) {
				var rules []string
				for _, j := range p.Jobs {
					rules = append(rules, j.Rules...)
				}
				assert.Contains(t, rules, `-p /we\*ird/*/*`)
			}},
		{name: "odd names of large files are escaped", opts: planOptions{Streams: 2},
			spec: []string{"[b]/big[1]@64", "[b]/small=1"},
			check: func(t *testing.T, p *streamPlan) {
				var rules []string
				for _, j := range p.Jobs {
					rules = append(rules, j.Rules...)
				}
				assert.ElementsMatch(t, []string{`- /\[b]/big\[1]`, `- /\[b]/.big\[1].??????`, // the owner of [b]
					`+ /\[b]/big\[1]`, `+ /\[b]/.big\[1].??????`, `- /\[b]/*`}, rules) // the large file's job
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			buildTree(t, root, tc.spec...)
			p, err := planStreams(root, tc.opts)
			require.NoError(t, err)
			checkCoverage(t, root, p)
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestPlanBalancesStreams(t *testing.T) {
	root := t.TempDir()
	var spec []string
	for d := 0; d < 40; d++ {
		for f := 0; f < 5; f++ {
			spec = append(spec, fmt.Sprintf("d%02d/f%d=%d", d, f, 1000*(d%7+1)))
		}
	}
	buildTree(t, root, spec...)
	p, err := planStreams(root, planOptions{Streams: 4, UnitWeight: 1})
	require.NoError(t, err)
	checkCoverage(t, root, p)
	weights := make([]int64, 4)
	var total int64
	for _, j := range p.Jobs {
		weights[j.Stream] += j.Weight
		total += j.Weight
	}
	for s, w := range weights {
		assert.InDelta(t, float64(total)/4, float64(w), float64(total)/10, "stream %d carries %d of %d", s, w, total)
	}
}

func TestPlanReadOnlyDirs(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root, "ro/x=1")
	require.NoError(t, os.Chmod(filepath.Join(root, "ro"), 0o555))
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "ro"), 0o755) })
	p, err := planStreams(root, planOptions{Streams: 4})
	require.NoError(t, err)
	assert.True(t, p.ReadOnlyDirs)
}

func TestPlanBadSource(t *testing.T) {
	_, err := planStreams(filepath.Join(t.TempDir(), "missing"), planOptions{Streams: 1})
	assert.ErrorContains(t, err, "no such file")
	f := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err = planStreams(f, planOptions{Streams: 1})
	assert.ErrorContains(t, err, "is not a directory")
}

func TestGlobEscape(t *testing.T) {
	assert.Equal(t, `a\b`, globEscape(`a\b`, false), "no wildcard: rsync reads backslashes literally")
	assert.Equal(t, `a\\b`, globEscape(`a\b`, true))
	assert.Equal(t, `x\*y\?\[z]\\`, globEscape(`x*y?[z]\`, false))
}

// TestPlanFindsACLsAndXattrs: the walk notes ACLs and user xattrs (both ways of asking the
// kernel: listxattrat and, on kernels before 6.13, a path lookup).
func TestPlanFindsACLsAndXattrs(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("path lookup %v", fallback), func(t *testing.T) {
			listxattratMissing.Store(fallback)
			defer listxattratMissing.Store(false)
			root := t.TempDir()
			buildTree(t, root, "a/plain=1", "b/other=1", "c/")
			p, err := planStreams(root, planOptions{Streams: 2, ProbeXattrs: true})
			require.NoError(t, err)
			assert.False(t, p.ACLs)
			assert.False(t, p.Xattrs)

			require.NoError(t, unix.Setxattr(filepath.Join(root, "b/other"), "user.k", []byte("v"), 0))
			p, err = planStreams(root, planOptions{Streams: 2, ProbeXattrs: true})
			require.NoError(t, err)
			assert.False(t, p.ACLs)
			assert.True(t, p.Xattrs)

			run(t, "setfacl", "-d", "-m", "u:1234:rx", filepath.Join(root, "c"))
			p, err = planStreams(root, planOptions{Streams: 2, ProbeXattrs: true})
			require.NoError(t, err)
			assert.True(t, p.ACLs)

			p, err = planStreams(root, planOptions{Streams: 2})
			require.NoError(t, err)
			assert.False(t, p.ACLs || p.Xattrs, "not asked, not looked for")

			acls, xattrs, err := writeManifest(context.Background(), root, filepath.Join(t.TempDir(), manifestFile), scanOptions{Xattrs: true})
			require.NoError(t, err)
			assert.True(t, acls && xattrs, "the server's look at its target")
		})
	}
}
