package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestSkipAction(t *testing.T) {
	owned := func(u *unstructured.Unstructured, kind string) *unstructured.Unstructured {
		u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "x/v1", Kind: kind, Name: "owner", UID: "1"}})
		return u
	}
	withAnn := func(u *unstructured.Unstructured, kv ...string) *unstructured.Unstructured {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		u.SetAnnotations(m)
		return u
	}
	obj := testutil.Object
	tests := []struct {
		name string
		item *unstructured.Unstructured
		skip bool
	}{
		{"build", obj("build.openshift.io/v1", "Build", "app", "web-1", nil), true},
		{"build pod", withAnn(obj("v1", "Pod", "app", "web-1-build", nil), keys.BuildNameAnnotation, "web-1"), true},
		{"ordinary pod", obj("v1", "Pod", "app", "web-abc", nil), false},
		{"job of a CronJob", owned(obj("batch/v1", "Job", "app", "nightly-123", nil), "CronJob"), true},
		{"standalone job", obj("batch/v1", "Job", "app", "migrate-db", nil), false},
		{"RC of a DeploymentConfig", owned(obj("v1", "ReplicationController", "app", "web-3", nil), "DeploymentConfig"), true},
		{"standalone RC", obj("v1", "ReplicationController", "app", "legacy", nil), false},
		{"serving certificate", withAnn(obj("v1", "Secret", "app", "web-tls", nil), keys.ServingCertOriginatingSvc, "web"), true},
		{"generated pull secret", withAnn(obj("v1", "Secret", "app", "default-dockercfg-abcde", map[string]any{"type": "kubernetes.io/dockercfg"}), keys.ServiceAccountNameAnnotation, "default"), true},
		{"generated pull secret (4.16+)", withAnn(obj("v1", "Secret", "app", "default-dockercfg-abcde", map[string]any{"type": "kubernetes.io/dockercfg"}), keys.InternalRegistryAuthTokenSA, "default"), true},
		{"user's dockercfg secret", obj("v1", "Secret", "app", "quay-creds", map[string]any{"type": "kubernetes.io/dockerconfigjson"}), false},
		{"operator credentials", obj("v1", "Secret", "app", "db-admin", map[string]any{"type": "Opaque"}), false},
		{"stage backup: deployment waits for the final restore", withAnn(obj("apps/v1", "Deployment", "app", "web", nil), keys.BackupMigration, "stage"), true},
		{"stage backup: PVC", withAnn(obj("v1", "PersistentVolumeClaim", "app", "data", nil), keys.BackupMigration, "stage"), true},
		{"stage backup: secret is restored", withAnn(obj("v1", "Secret", "app", "db-admin", nil), keys.BackupMigration, "stage"), false},
		{"final backup: deployment restored", withAnn(obj("apps/v1", "Deployment", "app", "web", nil), keys.BackupMigration, "final"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := testutil.NewLogger()
			o, err := NewSkipAction(log).Execute(inputU(tc.item, restoreWith()))
			require.NoError(t, err)
			assert.Equal(t, tc.skip, o.SkipRestore)
			if tc.skip {
				assert.Contains(t, logs.String(), tc.item.GetName(), "the log says which object and why")
			}
		})
	}
}
