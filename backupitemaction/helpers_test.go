package backupitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	"k8s.io/apimachinery/pkg/runtime"
)

type runtimeObject = runtime.Object

// assertProgress checks what a v2 action's Progress() reports, as `velero backup describe
// --details` shows it: done or not, the error (errSub "" for none), and the counts.
func assertProgress(t *testing.T, p velero.OperationProgress, completed bool, errSub string, done, total int64) {
	t.Helper()
	assert.Equal(t, completed, p.Completed)
	if errSub != "" {
		assert.Contains(t, p.Err, errSub)
	} else {
		assert.Empty(t, p.Err)
	}
	assert.Equal(t, done, p.NCompleted)
	assert.Equal(t, total, p.NTotal)
}
