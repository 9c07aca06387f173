package volume

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/operation"
)

func TestApplyReport(t *testing.T) {
	st := &operation.TransferStatus{Header: operation.Header{ID: "t1", Phase: operation.PhaseTransferring}}
	applyReport(st, dataplane.Report{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 10, BytesTotal: 100, Percent: 10, RateBytesPerSecond: 5, FilesTotal: 3}, 1)
	assert.Equal(t, int64(10), st.BytesDone)
	assert.Equal(t, 1, st.Attempts)
	applyReport(st, dataplane.Report{Type: dataplane.ReportRetry, Attempt: 1, Error: "connection reset by peer", BackoffSeconds: 2}, 1)
	assert.Contains(t, st.Message, "connection reset by peer")
	// a second client pod's first attempt is the transfer's third at least
	applyReport(st, dataplane.Report{Type: dataplane.ReportProgress, Attempt: 2, BytesDone: 50, BytesTotal: 100, Percent: 50}, 2)
	assert.Equal(t, 3, st.Attempts)
	assert.Empty(t, st.Message)
	applyReport(st, dataplane.Report{Type: dataplane.ReportDone, BytesTotal: 100, BytesSent: 40, Files: 3, FilesTransferred: 1, Attempts: 2, Warnings: 1}, 2)
	assert.Equal(t, int64(100), st.BytesDone)
	assert.Equal(t, int64(40), st.BytesSent)
	assert.Equal(t, int64(1), st.FilesSent)
	assert.Equal(t, float64(100), st.Percent)
	assert.Equal(t, 1, st.Warnings)
	assert.Zero(t, st.RateBPS)
}

func TestApplyReportSkippedDevices(t *testing.T) {
	st := &operation.TransferStatus{Header: operation.Header{ID: "t1", Phase: operation.PhaseTransferring}}
	applyReport(st, dataplane.Report{Type: dataplane.ReportDone, BytesTotal: 10, Files: 9, Warnings: 2,
		Skipped: []string{"dev/null0", "disk"}, SkippedCount: 2, Attempts: 1}, 1)
	assert.Equal(t, 2, st.Warnings)
	assert.Contains(t, st.Message, "2 device file(s) not copied")
	assert.Contains(t, st.Message, "dev/null0, disk", "names the files, so the user knows what to recreate")
}

func TestApplyReportVerify(t *testing.T) {
	st := &operation.TransferStatus{Header: operation.Header{ID: "t1", Phase: operation.PhaseTransferring}}
	applyReport(st, dataplane.Report{Type: dataplane.ReportProgress, Attempt: 1, BytesDone: 100, BytesTotal: 100, Percent: 100, VerifyPercent: 12.5}, 1)
	assert.Equal(t, 12.5, st.Verifying)
	var first []dataplane.Mismatch
	for _, p := range []string{"a", "b", "c", "d", "e", "f"} {
		first = append(first, dataplane.Mismatch{Path: p, Diff: "content"})
	}
	applyReport(st, dataplane.Report{Type: dataplane.ReportRetry, Attempt: 1, Error: "verification failed: …", BackoffSeconds: 2,
		Verified: &dataplane.Verification{Files: 9, Bytes: 900, Mismatches: 6, First: first}}, 1)
	assert.Zero(t, st.Verifying)
	assert.Equal(t, &operation.TransferVerification{Files: 9, Bytes: 900, Mismatches: 6, First: []string{"a", "b", "c", "d", "e"}}, st.Verified,
		"the annotation names five paths at most")
	assert.Contains(t, st.Message, "verification failed")
	applyReport(st, dataplane.Report{Type: dataplane.ReportProgress, Attempt: 2, BytesDone: 100, BytesTotal: 100, Percent: 100}, 1)
	assert.Zero(t, st.Verifying, "the copy of the next attempt")
	applyReport(st, dataplane.Report{Type: dataplane.ReportDone, BytesTotal: 100, Files: 9, Attempts: 2,
		Verified: &dataplane.Verification{Files: 9, Bytes: 900, Repaired: 6}}, 1)
	assert.Equal(t, &operation.TransferVerification{Files: 9, Bytes: 900, Repaired: 6}, st.Verified)
	applyReport(st, dataplane.Report{Type: dataplane.ReportDone, BytesTotal: 100, Files: 9, Attempts: 1}, 1)
	assert.Nil(t, st.Verified, "a pass without verification says nothing about one")
}
