package backupitemaction

import (
	"testing"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/testutil"
)

func scc(name string, users, groups []string) *securityv1.SecurityContextConstraints {
	return &securityv1.SecurityContextConstraints{ObjectMeta: metav1.ObjectMeta{Name: name}, Users: users, Groups: groups}
}

func TestServiceAccountAction(t *testing.T) {
	sccs := []*securityv1.SecurityContextConstraints{
		scc("app-anyuid", []string{"system:serviceaccount:app:runner"}, nil),
		scc("app-group", nil, []string{"system:serviceaccounts:app"}),
		scc("other-ns", []string{"system:serviceaccount:other:runner"}, nil),
		scc("restricted-v2", nil, []string{"system:authenticated"}),
		scc("cluster-sas", nil, []string{"system:serviceaccounts"}),
		scc("prefix-trap", []string{"system:serviceaccount:app:runner-2"}, nil),
	}
	tests := []struct {
		name      string
		openShift bool
		sa        string
		want      []string
	}{
		{name: "plain Kubernetes: nothing, no error", openShift: false, sa: "runner"},
		{name: "direct user grant and namespace group", openShift: true, sa: "runner", want: []string{"app-anyuid", "app-group"}},
		{name: "another service account gets only the group grant", openShift: true, sa: "default", want: []string{"app-group"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var opts []testutil.Option
			if tc.openShift {
				for _, s := range sccs {
					opts = append(opts, testutil.WithSecurityObjects(s))
				}
			}
			cluster := testutil.NewCluster(opts...)
			log, _ := testutil.NewLogger()
			a := NewServiceAccountAction(log, cluster.Clients)
			sa := builder.ForServiceAccount("app", tc.sa).Result()
			item := testutil.Unstructured(t, sa)
			out, extra, err := a.Execute(item, ordinaryBackup())
			require.NoError(t, err)
			assert.Equal(t, item, out, "the service account itself is unchanged")
			var got []string
			for _, r := range extra {
				assert.Equal(t, SCCResource, r.GroupResource)
				got = append(got, r.Name)
			}
			assert.ElementsMatch(t, tc.want, got)
		})
	}
}
