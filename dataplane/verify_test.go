package dataplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ferry-dev/ferry/internal/treediff"
)

// TestSendVerify runs the verify pass with the real rsync and stunnel. A target file corrupted
// without a change of size or mtime is invisible to the copy (it decides by size and mtime)
// and found by the verify pass, by path; so is a file that goes missing on the target between
// the copy and the verify pass. The first difference makes the next attempt copy by content
// (which repairs the corruption); a difference that survives such a copy fails send for good
// (exit 65). A clean target verifies with every file compared and no difference.
func TestSendVerify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unitWeight int64
	}{{name: "default split"}, {name: "fine split", unitWeight: 1}} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
			var files, size int64
			for d := 0; d < 4; d++ {
				require.NoError(t, os.MkdirAll(filepath.Join(src, fmt.Sprintf("d%d", d)), 0o755))
				for f := 0; f < 10; f++ {
					writeRandom(t, filepath.Join(src, fmt.Sprintf("d%d/f%d", d, f)), 64<<10, uint64(10*d+f))
					files, size = files+1, size+64<<10
				}
			}
			buildTree(t, src, "empty=0", "d0/linked=>d0/f1", "link->d0/f0", "d3/sub/")
			files, size = files+2, size+64<<10 // the empty file and the hard link's second name
			require.NoError(t, os.Mkdir(dst, 0o755))
			tweak := func(more func(*SendOptions)) func(*SendOptions) {
				return func(o *SendOptions) {
					o.planUnitWeight = tc.unitWeight
					if more != nil {
						more(o)
					}
				}
			}
			pass := 0
			sendTo := func(more func(*SendOptions)) (sendResult, error) {
				pass++
				dir := filepath.Join(base, fmt.Sprint(pass))
				srv := startServer(t, dir, dst)
				r := send(t, srv, dir, src, tweak(more))
				return r, srv.wait(t)
			}
			r, serr := sendTo(nil)
			require.NoError(t, r.err)
			require.NoError(t, serr)

			// Bit rot on the target: one byte of d2/f5 changes, its size and mtime do not.
			corrupted := filepath.Join(dst, "d2/f5")
			fi, err := os.Stat(corrupted)
			require.NoError(t, err)
			f, err := os.OpenFile(corrupted, os.O_RDWR, 0)
			require.NoError(t, err)
			b := []byte{0}
			_, err = f.ReadAt(b, 1000)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{b[0] ^ 0xff}, 1000)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			setTimes(t, corrupted, fi.ModTime())
			require.Error(t, treediff.Equal(src, dst, treediff.All()), "the target differs")

			// The copy alone does not see it.
			r, serr = sendTo(nil)
			require.NoError(t, r.err)
			require.NoError(t, serr)
			assert.Zero(t, r.done.FilesTransferred, "size and mtime are equal: nothing copied")
			assert.Nil(t, r.done.Verified)
			require.Error(t, treediff.Equal(src, dst, treediff.All()), "still corrupted")

			// With the verify pass, and a file that goes missing on the target after each copy:
			// attempt 1 finds both, attempt 2 copies by content, which repairs the corruption, and
			// finds the missing file again; then send gives up.
			missing := filepath.Join(dst, "d3/f7")
			r, serr = sendTo(func(o *SendOptions) {
				o.Verify = true
				o.afterCopy = func(int) { require.NoError(t, os.Remove(missing)) }
			})
			require.Error(t, r.err)
			assert.Error(t, serr, "the server learns that the client gave up")
			var verr *VerifyError
			require.ErrorAs(t, r.err, &verr)
			assert.True(t, verr.ContentCopy)
			assert.Equal(t, ExitVerifyFailed, exitCodeOf(r.err))

			require.Equal(t, 1, r.count(ReportRetry), "one retry, after the first difference")
			var retry, last Report
			for _, e := range r.reports {
				if e.Type == ReportRetry {
					retry = e
				}
			}
			last = r.reports[len(r.reports)-1]
			require.NotNil(t, retry.Verified, "the retry carries the differences")
			// Removing d3/f7 changed d3's mtime, which the copy keeps: a difference too.
			assert.Equal(t, Verification{Files: files, Bytes: size, Mismatches: 3, First: []Mismatch{
				{Path: "d2/f5", Diff: "content"}, {Path: "d3/", Diff: "mtime"}, {Path: "d3/f7", Diff: "missing on the target"}}}, *retry.Verified)
			assert.Contains(t, retry.Error, "3 difference(s) between source and target")
			assert.Contains(t, retry.Error, "d2/f5 (content), d3/ (mtime), d3/f7 (missing on the target)")
			assert.Contains(t, retry.Error, "the next attempt copies by content")

			assert.Equal(t, ReportError, last.Type)
			assert.Equal(t, 2, last.Attempt)
			assert.Equal(t, ExitVerifyFailed, last.ExitCode)
			require.NotNil(t, last.Verified)
			assert.Equal(t, Verification{Files: files, Bytes: size, Mismatches: 2, First: []Mismatch{
				{Path: "d3/", Diff: "mtime"}, {Path: "d3/f7", Diff: "missing on the target"}}}, *last.Verified)
			assert.Contains(t, last.Error, "the copy compared contents, so the source changed during the transfer or the target does not keep what was written")
			var progressed bool
			for _, e := range r.reports {
				progressed = progressed || (e.Type == ReportProgress && e.VerifyPercent > 0)
			}
			assert.True(t, progressed, "the verify pass reports progress of its own")

			_, err = os.Stat(missing)
			require.True(t, errors.Is(err, os.ErrNotExist))
			same, err := os.ReadFile(corrupted)
			require.NoError(t, err)
			want, err := os.ReadFile(filepath.Join(src, "d2/f5"))
			require.NoError(t, err)
			assert.Equal(t, want, same, "the copy by content repaired the corrupted file")

			// A clean target verifies: every file compared, no difference.
			r, serr = sendTo(func(o *SendOptions) { o.Verify = true })
			require.NoError(t, r.err)
			require.NoError(t, serr)
			assert.Equal(t, 1, r.done.Attempts)
			require.NotNil(t, r.done.Verified)
			assert.Equal(t, Verification{Files: files, Bytes: size}, *r.done.Verified)
			require.NoError(t, treediff.Equal(src, dst, treediff.All()))

			// A corruption found and repaired within one send: done says so.
			f, err = os.OpenFile(corrupted, os.O_RDWR, 0)
			require.NoError(t, err)
			_, err = f.WriteAt([]byte{b[0] ^ 0x01}, 1000)
			require.NoError(t, err)
			require.NoError(t, f.Close())
			setTimes(t, corrupted, fi.ModTime())
			r, serr = sendTo(func(o *SendOptions) { o.Verify = true })
			require.NoError(t, r.err)
			require.NoError(t, serr)
			assert.Equal(t, 2, r.done.Attempts)
			require.NotNil(t, r.done.Verified)
			assert.Equal(t, Verification{Files: files, Bytes: size, Repaired: 1}, *r.done.Verified)
			assert.Contains(t, r.done.Human(), fmt.Sprintf("verified: %d files, 2.6 MiB compared, no difference (1 found by an earlier attempt, copied again by content)", files))
			require.NoError(t, treediff.Equal(src, dst, treediff.All()))
		})
	}
}

func TestParseItemized(t *testing.T) {
	for _, tc := range []struct {
		line    string
		regular bool
		size    int64
		name    string
		diff    string
	}{
		{line: ".f          6 a", regular: true, size: 6, name: "a"},
		{line: ".d          4096 ./", size: 4096, name: "./"},
		{line: "hf          6 d/hard link", regular: true, size: 6, name: "d/hard link"},
		{line: ".L          1 l", size: 1, name: "l"},
		{line: ">fc........ 6 a", regular: true, size: 6, name: "a", diff: "content"},
		{line: ">f.st...... 7 b", regular: true, size: 7, name: "b", diff: "content (size), mtime"},
		{line: ">f+++++++++ 1000 d/e/big", regular: true, size: 1000, name: "d/e/big", diff: "missing on the target"},
		{line: "cd+++++++++ 4096 x/", size: 4096, name: "x/", diff: "missing on the target"},
		{line: "*deleting   0 d/extra", size: 0, name: "d/extra", diff: "not in the source"},
		{line: "cLc.t...... 1 l", size: 1, name: "l", diff: "symlink target, mtime"},
		{line: ".d..t...... 4096 d/", size: 4096, name: "d/", diff: "mtime"},
		{line: ".f...po.... 3 f", regular: true, size: 3, name: "f", diff: "mode, owner"},
		{line: ".f.......ax 3 f", regular: true, size: 3, name: "f", diff: "ACL, xattrs"},
		{line: "cS.....g... 0 fifo", size: 0, name: "fifo", diff: "group"},
		{line: "cD          0 dev", size: 0, name: "dev", diff: "type"},
		{line: ".f          3 new\\#012line", regular: true, size: 3, name: `new\#012line`},
	} {
		it, ok := parseItemized(tc.line)
		require.True(t, ok, tc.line)
		assert.Equal(t, tc.regular, it.regular(), tc.line)
		assert.Equal(t, tc.size, it.size, tc.line)
		assert.Equal(t, tc.name, it.name, tc.line)
		assert.Equal(t, tc.diff, it.diff(), tc.line)
	}
	for _, line := range []string{"", "sent 251 bytes  received 63 bytes", "Number of files: 9 (reg: 4, dir: 3)",
		"rsync: [sender] link_stat \"/x\" failed", "total size is 1,019  speedup is 3.25 (DRY RUN)", ".f          x a", "xf          3 a"} {
		_, ok := parseItemized(line)
		assert.False(t, ok, line)
	}
}

// TestReadChars: the verify pass's progress reads how much rsync has read from /proc.
func TestReadChars(t *testing.T) {
	before := readChars(os.Getpid())
	require.Positive(t, before)
	_, err := os.ReadFile("/proc/self/exe")
	require.NoError(t, err)
	assert.Greater(t, readChars(os.Getpid()), before)
	assert.Equal(t, int64(-1), readChars(1<<30), "no such process")
}
