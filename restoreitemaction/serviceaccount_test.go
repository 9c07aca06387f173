package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestServiceAccountAction(t *testing.T) {
	refs := func(names ...string) []corev1.LocalObjectReference {
		var out []corev1.LocalObjectReference
		for _, n := range names {
			out = append(out, corev1.LocalObjectReference{Name: n})
		}
		return out
	}
	sa := builder.ForServiceAccount("app", "builder").Result()
	sa.Secrets = []corev1.ObjectReference{{Name: "builder-dockercfg-abcde"}, {Name: "builder-token-xyz"}, {Name: "my-creds"}}
	sa.ImagePullSecrets = refs("builder-dockercfg-abcde", "other-dockercfg-aaaaa", "my-creds")

	log, logs := testutil.NewLogger()
	o, err := NewServiceAccountAction(log).Execute(input(t, sa, restoreWith()))
	require.NoError(t, err)
	var got corev1.ServiceAccount
	testutil.FromUnstructured(t, out(t, o), &got)
	assert.Equal(t, []corev1.ObjectReference{{Name: "builder-token-xyz"}, {Name: "my-creds"}}, got.Secrets, "Velero drops the token one itself")
	assert.Equal(t, refs("other-dockercfg-aaaaa", "my-creds"), got.ImagePullSecrets, "only this account's generated secrets go")
	assert.Contains(t, logs.String(), "app")

	only := builder.ForServiceAccount("app", "default").Result()
	only.ImagePullSecrets = refs("default-dockercfg-qqqqq")
	o, err = NewServiceAccountAction(log).Execute(input(t, only, restoreWith()))
	require.NoError(t, err)
	testutil.FromUnstructured(t, out(t, o), &got)
	assert.Empty(t, got.ImagePullSecrets)
}
