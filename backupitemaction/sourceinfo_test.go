package backupitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestSourceInfoAction(t *testing.T) {
	imageConfig := testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
		"status.internalRegistryHostname": "image-registry.openshift-image-registry.svc:5000",
	})
	tests := []struct {
		name    string
		opts    []testutil.Option
		config  map[string]string
		backup  *velerov1.Backup
		service bool              // the item is a Service, not a Deployment
		wantAnn map[string]string // "" = absent
	}{
		{
			name:    "a Service in a migration: only the migration kind, even with a registry",
			opts:    []testutil.Option{testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig)},
			backup:  migrationBackup("final"),
			service: true,
			wantAnn: map[string]string{keys.SourceRegistry: "", keys.SourceServerVersion: "", keys.BackupMigration: "final"},
		},
		{
			name:    "a Service in an ordinary backup: nothing",
			opts:    []testutil.Option{testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig)},
			backup:  ordinaryBackup(),
			service: true,
			wantAnn: map[string]string{keys.SourceRegistry: "", keys.BackupMigration: ""},
		},
		{
			name:    "plain Kubernetes, ordinary backup: nothing recorded",
			backup:  ordinaryBackup(),
			wantAnn: map[string]string{keys.SourceRegistry: "", keys.SourceServerVersion: "", keys.BackupMigration: ""},
		},
		{
			name:    "plain Kubernetes, migration: only the migration kind",
			backup:  migrationBackup("stage"),
			wantAnn: map[string]string{keys.SourceRegistry: "", keys.BackupMigration: "stage"},
		},
		{
			name:    "plain Kubernetes with an explicit internalRegistry",
			config:  map[string]string{"internalRegistry": "registry.local:5000"},
			backup:  ordinaryBackup(),
			wantAnn: map[string]string{keys.SourceRegistry: "registry.local:5000", keys.SourceServerVersion: "1.33"},
		},
		{
			name:    "OpenShift 4 discovery",
			opts:    []testutil.Option{testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig), testutil.ServerVersion("1.31")},
			backup:  migrationBackup("final"),
			wantAnn: map[string]string{keys.SourceRegistry: "image-registry.openshift-image-registry.svc:5000", keys.SourceServerVersion: "1.31", keys.BackupMigration: "final"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cluster := testutil.NewCluster(tc.opts...)
			log, _ := testutil.NewLogger()
			a := NewSourceInfoAction(log, cluster.Clients, configOf(t, tc.config))
			var item *unstructured.Unstructured
			if tc.service {
				item = testutil.Object("v1", "Service", "app", "web", nil)
			} else {
				item = testutil.Unstructured(t, builder.ForDeployment("app", "web").Result())
			}
			out, _, err := a.Execute(item, tc.backup)
			require.NoError(t, err)
			got := out.(*unstructured.Unstructured).GetAnnotations()
			for k, v := range tc.wantAnn {
				if v == "" {
					assert.NotContains(t, got, k)
				} else {
					assert.Equal(t, v, got[k], k)
				}
			}
		})
	}
}
