package stack

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

//go:embed manifests/openshift-apiserver-crds.yaml
var openshiftAPIServerCRDs []byte

// The CRD manifests github.com/openshift/api ships for the OpenShift APIs that are CRDs in a
// real cluster too (paths inside the module).
var openshiftAPICRDFiles = []string{
	"route/v1/zz_generated.crd-manifests/routes.crd.yaml",
	"security/v1/zz_generated.crd-manifests/0000_03_config-operator_01_securitycontextconstraints.crd.yaml",
	"config/v1/zz_generated.crd-manifests/0000_10_config-operator_01_images-Default.crd.yaml",
}

// ImagesConfigGVR is config.openshift.io/v1 images; its "cluster" object's
// status.internalRegistryHostname names the internal registry (OpenShift 4).
var ImagesConfigGVR = schema.GroupVersionResource{Group: "config.openshift.io", Version: "v1", Resource: "images"}

// installCRDs installs Velero's CRDs the way its docs say (`velero install --crds-only`), and
// with Options.OpenShift the OpenShift APIs.
func (c *Cluster) installCRDs(ctx context.Context) error {
	veleroCRDs, err := c.stack.veleroCRDs(ctx)
	if err != nil {
		return err
	}
	if _, err := c.KubectlStdin(ctx, bytes.NewReader(veleroCRDs), "apply", "--server-side", "-f", "-"); err != nil {
		return err
	}
	if c.stack.OpenShift {
		dir, err := openshiftAPIDir(ctx)
		if err != nil {
			return err
		}
		args := []string{"apply", "--server-side", "-f", "-"}
		for _, f := range openshiftAPICRDFiles {
			args = append(args, "-f", filepath.Join(dir, f))
		}
		if _, err := c.KubectlStdin(ctx, bytes.NewReader(openshiftAPIServerCRDs), args...); err != nil {
			return err
		}
	}
	if _, err := c.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"); err != nil {
		return err
	}
	if c.stack.OpenShift {
		return c.createImageConfig(ctx)
	}
	return nil
}

// createImageConfig creates images.config.openshift.io "cluster" whose status names the
// cluster's registry, where ferry's registry discovery looks on OpenShift 4.
func (c *Cluster) createImageConfig(ctx context.Context) error {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "config.openshift.io/v1",
		"kind":       "Image",
		"metadata":   map[string]any{"name": "cluster"},
		"spec":       map[string]any{},
	}}
	created, err := c.Dynamic.Resource(ImagesConfigGVR).Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating images.config.openshift.io/cluster: %w", err)
	}
	if err := unstructured.SetNestedField(created.Object, c.RegistryHost, "status", "internalRegistryHostname"); err != nil {
		return err
	}
	if _, err := c.Dynamic.Resource(ImagesConfigGVR).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting images.config.openshift.io/cluster status: %w", err)
	}
	return nil
}

// veleroCRDs renders Velero's CRDs once per stack.
func (s *Stack) veleroCRDs(ctx context.Context) ([]byte, error) {
	s.crdOnce.Do(func() {
		var out string
		out, s.crdErr = run(ctx, nil, s.tools.velero, "install", "--crds-only", "--dry-run", "-o", "yaml")
		s.crdYAML = []byte(out)
	})
	return s.crdYAML, s.crdErr
}

var openshiftAPIDirOnce = sync.OnceValues(func() (string, error) {
	// Run from the repository root, so the version is the one ferry's go.mod pins.
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/openshift/api")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("finding github.com/openshift/api (for its CRD manifests): go mod download: %v %s %s", err, msg, strings.TrimSpace(string(out)))
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("go mod download -json github.com/openshift/api: %w", err)
	}
	if mod.Dir == "" {
		return "", fmt.Errorf("go mod download github.com/openshift/api: %s", mod.Error)
	}
	return mod.Dir, nil
})

// openshiftAPIDir is the module folder of github.com/openshift/api at the version ferry uses.
func openshiftAPIDir(context.Context) (string, error) { return openshiftAPIDirOnce() }
