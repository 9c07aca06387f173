//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/test/stack"
)

// TestDeployManifests validates deploy/ against a real API server with server-side dry-run, as
// `kubectl apply` would on a cluster: the source-cluster component patched into a stock
// `velero install`, the OpenShift SCC component, the target-cluster identity, and the Helm values'
// containers.
func TestDeployManifests(t *testing.T) {
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c := s.Target
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	dir := t.TempDir()

	// A stock Velero install, as `velero install --dry-run -o yaml` prints it.
	creds := filepath.Join(dir, "credentials")
	require.NoError(t, os.WriteFile(creds, []byte("[default]\naws_access_key_id=x\naws_secret_access_key=y\n"), 0o600))
	velero, err := c.Velero(ctx, "install", "--provider", "aws", "--plugins", "velero/velero-plugin-for-aws:v1.14.3",
		"--bucket", "backups", "--secret-file", creds, "--backup-location-config", "region=us-east-1", "--dry-run", "-o", "yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "velero.yaml"), []byte(velero), 0o644))
	// kustomize takes components by relative path only.
	component, err := filepath.Rel(dir, filepath.Join(repo, "deploy/component"))
	require.NoError(t, err)
	openshift, err := filepath.Rel(dir, filepath.Join(repo, "deploy/openshift"))
	require.NoError(t, err)
	kustomization := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: velero\nresources: [velero.yaml]\n" +
		"components:\n  - " + component + "\n  - " + openshift + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644))

	rendered, err := c.Kubectl(ctx, "kustomize", "--load-restrictor=LoadRestrictionsNone", dir)
	require.NoError(t, err)
	deployment := findDeployment(t, rendered, "velero")
	var inits []string
	for _, ic := range deployment.Spec.Template.Spec.InitContainers {
		inits = append(inits, ic.Name)
		if ic.Name == "ferry-datamover" {
			require.NotNil(t, ic.RestartPolicy)
			assert.Equal(t, corev1.ContainerRestartPolicyAlways, *ic.RestartPolicy, "the sidecar is a native sidecar")
		}
	}
	assert.ElementsMatch(t, []string{"velero-velero-plugin-for-aws", "ferry-plugins", "ferry-datamover"}, inits)
	assert.Equal(t, "velero", deployment.Spec.Template.Spec.Containers[0].Name, "Velero's own container is untouched")

	out, err := c.KubectlStdin(ctx, strings.NewReader(rendered), "apply", "--dry-run=server", "-f", "-")
	require.NoError(t, err, "source-cluster install:\n%s", out)
	for _, want := range []string{"deployment.apps/velero", "clusterrole.rbac.authorization.k8s.io/ferry-datamover", "configmap/ferry-config",
		"securitycontextconstraints.security.openshift.io/ferry-transfer", "clusterrole.rbac.authorization.k8s.io/ferry-transfer-scc"} {
		assert.Contains(t, out, want)
	}
	// The data mover as its own Deployment (deploy/datamover), next to the same stock Velero,
	// which it leaves alone.
	standalone := filepath.Join(dir, "standalone")
	require.NoError(t, os.Mkdir(standalone, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(standalone, "velero.yaml"), []byte(velero), 0o644))
	datamover, err := filepath.Rel(standalone, filepath.Join(repo, "deploy/datamover"))
	require.NoError(t, err)
	openshift, err = filepath.Rel(standalone, filepath.Join(repo, "deploy/openshift"))
	require.NoError(t, err)
	kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: velero\nresources: [velero.yaml]\n" +
		"components:\n  - " + datamover + "\n  - " + openshift + "\n"
	require.NoError(t, os.WriteFile(filepath.Join(standalone, "kustomization.yaml"), []byte(kustomization), 0o644))
	rendered, err = c.Kubectl(ctx, "kustomize", "--load-restrictor=LoadRestrictionsNone", standalone)
	require.NoError(t, err)
	stock := findDeployment(t, rendered, "velero")
	assert.Len(t, stock.Spec.Template.Spec.InitContainers, 1, "Velero's pod is untouched: only its AWS plugin")
	dm := findDeployment(t, rendered, "ferry-datamover")
	assert.Equal(t, "ferry-datamover", dm.Spec.Template.Spec.ServiceAccountName)
	assert.Equal(t, "/tmp", dm.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPath, "a writable /tmp under the read-only root")
	out, err = c.KubectlStdin(ctx, strings.NewReader(rendered), "apply", "--dry-run=server", "-f", "-")
	require.NoError(t, err, "source-cluster install with the data mover's Deployment:\n%s", out)
	for _, want := range []string{"deployment.apps/ferry-datamover", "serviceaccount/ferry-datamover", "clusterrolebinding.rbac.authorization.k8s.io/ferry-datamover-deployment"} {
		assert.Contains(t, out, want)
	}

	// Next to OADP: the same Deployment in openshift-adp, every reference to Velero's namespace
	// patched (deploy/examples/oadp), nothing left pointing at "velero".
	rendered, err = c.Kubectl(ctx, "kustomize", "--load-restrictor=LoadRestrictionsNone", filepath.Join(repo, "deploy/examples/oadp"))
	require.NoError(t, err)
	assert.NotContains(t, rendered, "namespace: velero")
	assert.NotContains(t, rendered, ":velero:")
	require.NoError(t, c.CreateNamespace(ctx, "openshift-adp", nil))
	t.Cleanup(func() { _ = c.DeleteNamespace(context.Background(), "openshift-adp") })
	out, err = c.KubectlStdin(ctx, strings.NewReader(rendered), "apply", "--dry-run=server", "-f", "-")
	require.NoError(t, err, "OADP install:\n%s", out)
	assert.Contains(t, out, "deployment.apps/ferry-datamover")

	// A dry run creates nothing, so the namespace the target kustomization creates first must
	// exist for its other objects to validate: the stack installed deploy/target for its data
	// mover (stack.TargetNamespace).
	require.NoError(t, s.InstallFerry(ctx))
	out, err = c.Kubectl(ctx, "apply", "--dry-run=server", "-k", filepath.Join(repo, "deploy/target"))
	require.NoError(t, err, "target-cluster identity:\n%s", out)
	assert.Contains(t, out, "clusterrole.rbac.authorization.k8s.io/ferry-target")

	// The Helm values' init containers, in the Deployment the chart renders them into.
	raw, err := os.ReadFile(filepath.Join(repo, "deploy/helm/values-ferry.yaml"))
	require.NoError(t, err)
	var values struct {
		InitContainers []corev1.Container `json:"initContainers"`
		ExtraVolumes   []corev1.Volume    `json:"extraVolumes"`
	}
	require.NoError(t, yaml.UnmarshalStrict(raw, &values))
	deployment = stock // as the chart renders it
	deployment.Spec.Template.Spec.InitContainers = values.InitContainers
	deployment.Spec.Template.Spec.Volumes = append(deployment.Spec.Template.Spec.Volumes, values.ExtraVolumes...)
	b, err := yaml.Marshal(deployment)
	require.NoError(t, err)
	out, err = c.KubectlStdin(ctx, strings.NewReader(string(b)), "apply", "--dry-run=server", "-f", "-")
	require.NoError(t, err, "Helm values:\n%s", out)
}

func findDeployment(t *testing.T, manifests, name string) *appsv1.Deployment {
	t.Helper()
	for _, doc := range strings.Split(manifests, "\n---\n") {
		var meta metav1.TypeMeta
		if yaml.Unmarshal([]byte(doc), &meta) != nil || meta.Kind != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		require.NoError(t, yaml.Unmarshal([]byte(doc), &d))
		if d.Name == name {
			return &d
		}
	}
	t.Fatalf("no Deployment %s in the rendered manifests", name)
	return nil
}
