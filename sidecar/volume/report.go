package volume

import (
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/operation"
)

// applyReport folds one report of client pod number podAttempt into the transfer status.
func applyReport(st *operation.TransferStatus, e dataplane.Report, podAttempt int) {
	switch e.Type {
	case dataplane.ReportProgress:
		st.BytesDone, st.BytesTotal, st.Percent, st.RateBPS = e.BytesDone, e.BytesTotal, e.Percent, e.RateBytesPerSecond
		st.Files = e.FilesTotal
		st.Verifying = e.VerifyPercent
		st.Message = ""
	case dataplane.ReportRetry:
		st.Message = fmt.Sprintf("attempt %d failed: %s; retrying in %.0fs", e.Attempt, e.Error, e.BackoffSeconds)
		st.Verifying = 0
		if e.Verified != nil {
			st.Verified = verification(e.Verified)
		}
	case dataplane.ReportDone:
		st.BytesDone, st.BytesTotal, st.Percent, st.RateBPS = e.BytesTotal, e.BytesTotal, 100, 0
		st.BytesSent, st.Files, st.FilesSent, st.Warnings = e.BytesSent, e.Files, e.FilesTransferred, e.Warnings
		st.Verifying, st.Verified = 0, verification(e.Verified)
		st.Message = ""
		if e.SkippedCount > 0 {
			st.Message = fmt.Sprintf("%d device file(s) not copied: the target's transfer server cannot create them (not root, or without CAP_MKNOD); e.g. %s",
				e.SkippedCount, strings.Join(e.Skipped[:min(len(e.Skipped), 5)], ", "))
		}
	case dataplane.ReportError:
		st.Message = e.Error
		st.Verifying = 0
		if e.Verified != nil {
			st.Verified = verification(e.Verified)
		}
	}
	// Attempts counts `send` attempts over all client pods: each earlier pod made at least one.
	n := e.Attempt
	if e.Attempts > n {
		n = e.Attempts
	}
	if n < 1 {
		n = 1
	}
	if total := podAttempt - 1 + n; total > st.Attempts {
		st.Attempts = total
	}
}

// verification is the status's summary of a verify pass (nil for none): the counts and the
// first few paths, since the annotation must stay small.
func verification(v *dataplane.Verification) *operation.TransferVerification {
	if v == nil {
		return nil
	}
	out := &operation.TransferVerification{Files: v.Files, Bytes: v.Bytes, Mismatches: v.Mismatches, Repaired: v.Repaired}
	if paths := v.Paths(); len(paths) > 0 {
		out.First = paths[:min(len(paths), operation.MaxVerifiedPaths)]
	}
	return out
}
