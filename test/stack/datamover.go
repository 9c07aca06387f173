package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-dev/ferry/test/images"
)

// DatamoverDeployment is the Deployment deploy/datamover runs the data mover as.
const DatamoverDeployment = "ferry-datamover"

// InstallDatamover runs the data mover as an admin installs it by default: deploy/datamover
// rendered with kustomize into Velero's namespace, ferry's image from the cluster's registry
// (kustomize's images, as an admin pins a release), applied with kubectl; then it waits until the
// Deployment is available and its pod holds the Lease the plugins look for. ferry-config and the
// transfer-pod policy's parameters stay ConfigureFerry's (the stack's settings), so run that
// first. Tests use EnsureSidecar, which installs it once.
func (s *Stack) InstallDatamover(ctx context.Context) error {
	if s.ferry.Target == nil {
		return fmt.Errorf("ferry is not configured on the stack: ConfigureFerry first")
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	c := s.Source
	dir, err := os.MkdirTemp(s.Dir, "datamover-kustomize-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	component, err := filepath.Rel(dir, filepath.Join(root, "deploy", "datamover"))
	if err != nil {
		return err
	}
	ref := c.Image(images.DatamoverName)
	name, tag, _ := strings.Cut(ref, ":"+s.images[images.DatamoverName].Key)
	if tag != "" || name == ref {
		return fmt.Errorf("cannot split image reference %q", ref)
	}
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
components:
  - %s
images:
  - name: ghcr.io/ferry-dev/ferry-datamover
    newName: %s
    newTag: %q
`, c.VeleroNamespace, component, name, s.images[images.DatamoverName].Key)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		return err
	}
	rendered, err := c.Kubectl(ctx, "kustomize", "--load-restrictor=LoadRestrictionsNone", dir)
	if err != nil {
		return fmt.Errorf("rendering deploy/datamover: %w\n%s", err, rendered)
	}
	var docs []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if strings.Contains(doc, "\nkind: ConfigMap\n") {
			continue // ferry-config and the policy's parameters: ConfigureFerry's
		}
		docs = append(docs, doc)
	}
	if out, err := c.KubectlStdin(ctx, strings.NewReader(strings.Join(docs, "\n---\n")), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("applying deploy/datamover: %w\n%s", err, out)
	}
	if out, err := c.Kubectl(ctx, "-n", c.VeleroNamespace, "rollout", "status", "deployment/"+DatamoverDeployment, "--timeout=3m"); err != nil {
		pods, _ := c.Kubectl(ctx, "-n", c.VeleroNamespace, "get", "pods", "-o", "wide")
		return fmt.Errorf("the data mover's Deployment is not available: %w\n%s\n%s", err, out, pods)
	}
	fromDeployment := func(holder string) bool { return strings.HasPrefix(holder, DatamoverDeployment+"-") }
	if err := c.waitDatamoverLease(ctx, fromDeployment, func() error { return nil }); err != nil {
		logs, _ := c.Kubectl(context.Background(), "-n", c.VeleroNamespace, "logs", "deployment/"+DatamoverDeployment, "--tail=30")
		return fmt.Errorf("%w\n%s", err, logs)
	}
	return nil
}
