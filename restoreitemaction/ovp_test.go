package restoreitemaction

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/testutil"
)

// This file checks that ferry's restore actions and openshift-velero-plugin's (OVP's) rewrite
// each field once, whichever plugin binary Velero runs first. OVP is not a dependency: ovpModel
// is a model of its restore actions, written from their documented behaviour
// (docs/openshift-velero-plugin.md), covering only the rewrites that overlap ferry's.

// OVP's stamps that ferry does not read (the one it removes is keys.OVPBackupRegistryHostname).
const (
	ovpBackupServerVersion  = "openshift.io/backup-server-version"
	ovpRestoreServerVersion = "openshift.io/restore-server-version"
	ovpRestoreRegistry      = "openshift.io/restore-registry-hostname"
)

// step is one restore item action's Execute.
type step func(*velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error)

// restoreChain runs actions on one item as Velero's restoreItem does: each action gets the
// previous one's output as Item and the backed-up item, unchanged, as ItemFromBackup (each a copy,
// as a plugin process gets them); an action that leaves the item out ends the chain.
func restoreChain(t *testing.T, backedUp *unstructured.Unstructured, restore *velerov1.Restore, steps ...step) (*unstructured.Unstructured, bool) {
	t.Helper()
	item := backedUp.DeepCopy()
	for _, s := range steps {
		o, err := s(&velero.RestoreItemActionExecuteInput{Item: item.DeepCopy(), ItemFromBackup: backedUp.DeepCopy(), Restore: restore})
		require.NoError(t, err)
		if o.SkipRestore {
			return nil, true
		}
		item = out(t, o)
	}
	return item, false
}

// ovpModel is OVP's restore actions on a target cluster whose internal registry is registry.
type ovpModel struct {
	registry string
	kube     kubernetes.Interface
}

// actions returns OVP's actions for a kind in the order Velero runs them (by registered name,
// "01-common-restore-plugin" first).
func (m ovpModel) actions(kind string) []step {
	switch kind {
	case "Pod":
		return []step{m.common, m.pod}
	case "Deployment":
		return []step{m.common, m.swapImages}
	case "DeploymentConfig":
		return []step{m.common, m.deploymentConfig}
	case "BuildConfig":
		return []step{m.common, m.buildConfig}
	case "ServiceAccount":
		return []step{m.serviceAccount}
	case "SecurityContextConstraints":
		return []step{m.scc}
	case "RoleBinding":
		return []step{m.roleBinding}
	case "Route":
		return []step{m.route}
	case "Service":
		return []step{m.service}
	case "ImageStreamTag":
		return []step{m.common, m.imageStreamTag}
	}
	return nil
}

func itemOf(in *velero.RestoreItemActionExecuteInput) *unstructured.Unstructured {
	return in.Item.(*unstructured.Unstructured)
}

func done(u *unstructured.Unstructured) (*velero.RestoreItemActionExecuteOutput, error) {
	return velero.NewRestoreItemActionExecuteOutput(u), nil
}

// common stamps the restoring cluster's version and internal registry.
func (m ovpModel) common(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[ovpRestoreServerVersion] = "1.33"
	ann[ovpRestoreRegistry] = m.registry
	u.SetAnnotations(ann)
	return done(u)
}

// ovpImage swaps an image in the old registry for the new one, mapping its namespace segment and
// dropping the digest of an image of the openshift namespace; ok is false when it does not match.
func ovpImage(ref, oldHost, newHost string, nsMap map[string]string) (string, bool) {
	host, path, found := strings.Cut(ref, "/")
	if !found || host != oldHost {
		return ref, false
	}
	if ns, rest, found := strings.Cut(path, "/"); found {
		if nsMap[ns] != "" {
			path = nsMap[ns] + "/" + rest
		}
		if ns == "openshift" {
			path, _, _ = strings.Cut(path, "@")
		}
	}
	return newHost + "/" + path, true
}

// swapImages rewrites containers and init containers from the item's backup registry stamp to its
// restore registry stamp; nothing when either is empty.
func (m ovpModel) swapImages(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	oldHost, newHost := u.GetAnnotations()[keys.OVPBackupRegistryHostname], u.GetAnnotations()[ovpRestoreRegistry]
	path, _ := kube.PodSpecPath(u.GetKind())
	spec, _, _ := unstructured.NestedMap(u.Object, path...)
	if oldHost == "" || newHost == "" || spec == nil {
		return done(u)
	}
	for _, field := range []string{"containers", "initContainers"} {
		list, _ := spec[field].([]any)
		for _, c := range list {
			cm := c.(map[string]any)
			if img, ok := ovpImage(cm["image"].(string), oldHost, newHost, in.Restore.Spec.NamespaceMapping); ok {
				cm["image"] = img
			}
		}
	}
	if err := unstructured.SetNestedMap(u.Object, spec, path...); err != nil {
		return nil, err
	}
	return done(u)
}

// targetPullSecret is OVP's choice of a generated pull secret: for a reference named
// default-, builder- or deployer-dockercfg-*, a secret of the target namespace with the same
// prefix whose service account names it as its pull secret; others are kept.
func (m ovpModel) targetPullSecret(name, ns string) (string, error) {
	for _, prefix := range []string{"builder-dockercfg-", "default-dockercfg-", "deployer-dockercfg-"} {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		secrets, err := m.kube.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return "", err
		}
		for _, s := range secrets.Items {
			sa := s.Annotations[keys.InternalRegistryAuthTokenSA]
			if !strings.HasPrefix(s.Name, prefix) || sa == "" {
				continue
			}
			acct, err := m.kube.CoreV1().ServiceAccounts(ns).Get(context.Background(), sa, metav1.GetOptions{})
			if err == nil && acct.Annotations[keys.InternalRegistryPullSecretRef] == s.Name {
				return s.Name, nil
			}
		}
		return "", errors.New("secret not found")
	}
	return name, nil
}

// pod swaps images and remaps generated pull secrets.
func (m ovpModel) pod(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	if _, err := m.swapImages(in); err != nil {
		return nil, err
	}
	u := itemOf(in)
	ns := mapNamespace(in.Restore.Spec.NamespaceMapping, in.ItemFromBackup.(*unstructured.Unstructured).GetNamespace())
	list, _, _ := unstructured.NestedSlice(u.Object, "spec", "imagePullSecrets")
	for _, e := range list {
		em := e.(map[string]any)
		name, err := m.targetPullSecret(em["name"].(string), ns)
		if err != nil {
			return nil, err
		}
		em["name"] = name
	}
	if list != nil {
		if err := unstructured.SetNestedSlice(u.Object, list, "spec", "imagePullSecrets"); err != nil {
			return nil, err
		}
	}
	return done(u)
}

// deploymentConfig swaps images; an image-change trigger whose namespace is mapped gets the
// DeploymentConfig's own mapped namespace.
func (m ovpModel) deploymentConfig(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	if _, err := m.swapImages(in); err != nil {
		return nil, err
	}
	u := itemOf(in)
	nsMap := in.Restore.Spec.NamespaceMapping
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	for _, t := range triggers {
		from, _, _ := unstructured.NestedMap(t.(map[string]any), "imageChangeParams", "from")
		if ns, _ := from["namespace"].(string); len(nsMap) > 0 && nsMap[ns] != "" {
			if err := unstructured.SetNestedField(t.(map[string]any), nsMap[u.GetNamespace()], "imageChangeParams", "from", "namespace"); err != nil {
				return nil, err
			}
		}
	}
	if triggers != nil {
		if err := unstructured.SetNestedSlice(u.Object, triggers, "spec", "triggers"); err != nil {
			return nil, err
		}
	}
	return done(u)
}

// buildConfig remaps generated push/pull secrets and DockerImage references of the output and
// the strategy (its source-image changes are lost: they are made to a copy).
func (m ovpModel) buildConfig(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	ns := mapNamespace(in.Restore.Spec.NamespaceMapping, in.ItemFromBackup.(*unstructured.Unstructured).GetNamespace())
	oldHost, newHost := u.GetAnnotations()[keys.OVPBackupRegistryHostname], u.GetAnnotations()[ovpRestoreRegistry]
	places := [][]string{{"output"}}
	for _, s := range buildStrategies {
		places = append(places, []string{"strategy", s})
	}
	for _, p := range places {
		holder, found, _ := unstructured.NestedMap(u.Object, append([]string{"spec"}, p...)...)
		if !found {
			continue
		}
		for _, key := range []string{"pushSecret", "pullSecret"} {
			if ref, ok := holder[key].(map[string]any); ok {
				name, err := m.targetPullSecret(ref["name"].(string), ns)
				if err != nil {
					return nil, err
				}
				ref["name"] = name
			}
		}
		for _, key := range []string{"to", "from"} {
			if ref, ok := holder[key].(map[string]any); ok && ref["kind"] == "DockerImage" && oldHost != "" && newHost != "" {
				if img, ok := ovpImage(ref["name"].(string), oldHost, newHost, in.Restore.Spec.NamespaceMapping); ok {
					ref["name"] = img
				}
			}
		}
		if err := unstructured.SetNestedMap(u.Object, holder, append([]string{"spec"}, p...)...); err != nil {
			return nil, err
		}
	}
	return done(u)
}

// serviceAccount removes one "<name>-dockercfg-" entry from secrets and one from imagePullSecrets.
func (m ovpModel) serviceAccount(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	for _, field := range []string{"secrets", "imagePullSecrets"} {
		list, _, _ := unstructured.NestedSlice(u.Object, field)
		for i, e := range list {
			if strings.HasPrefix(e.(map[string]any)["name"].(string), u.GetName()+"-dockercfg-") {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			unstructured.RemoveNestedField(u.Object, field)
		} else {
			if err := unstructured.SetNestedSlice(u.Object, list, field); err != nil {
				return nil, err
			}
		}
	}
	return done(u)
}

// ovpNames maps the namespace in the third ":" part of names whose second part is word.
func ovpNames(list []string, word string, nsMap map[string]string) []string {
	for i, n := range list {
		parts := strings.Split(n, ":")
		if len(parts) > 2 && parts[1] == word && nsMap[parts[2]] != "" {
			parts[2] = nsMap[parts[2]]
			list[i] = strings.Join(parts, ":")
		}
	}
	return list
}

// scc maps the namespace of service-account users (not groups).
func (m ovpModel) scc(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	if users, found, _ := unstructured.NestedStringSlice(u.Object, "users"); found {
		if err := unstructured.SetNestedStringSlice(u.Object, ovpNames(users, "serviceaccount", in.Restore.Spec.NamespaceMapping), "users"); err != nil {
			return nil, err
		}
	}
	return done(u)
}

// roleBinding (authorization.openshift.io only) maps roleRef.namespace, subject namespaces and
// service-account group names in subjects, userNames and groupNames.
func (m ovpModel) roleBinding(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	nsMap := in.Restore.Spec.NamespaceMapping
	if u.GroupVersionKind().Group != "authorization.openshift.io" || len(nsMap) == 0 {
		return done(u)
	}
	if ns, _, _ := unstructured.NestedString(u.Object, "roleRef", "namespace"); nsMap[ns] != "" {
		if err := unstructured.SetNestedField(u.Object, nsMap[ns], "roleRef", "namespace"); err != nil {
			return nil, err
		}
	}
	subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
	for _, s := range subjects {
		sm := s.(map[string]any)
		if ns, _ := sm["namespace"].(string); ns != "" && nsMap[ns] != "" {
			sm["namespace"] = nsMap[ns]
		}
		sm["name"] = ovpNames([]string{sm["name"].(string)}, "serviceaccounts", nsMap)[0]
	}
	if subjects != nil {
		if err := unstructured.SetNestedSlice(u.Object, subjects, "subjects"); err != nil {
			return nil, err
		}
	}
	for field, word := range map[string]string{"userNames": "serviceaccount", "groupNames": "serviceaccounts"} {
		if list, found, _ := unstructured.NestedStringSlice(u.Object, field); found {
			if err := unstructured.SetNestedStringSlice(u.Object, ovpNames(list, word, nsMap), field); err != nil {
				return nil, err
			}
		}
	}
	return done(u)
}

// imageStreamTag maps the namespace a reference tag follows and restores it (a pushed tag of
// the internal registry is left out: the image copy recreates it).
func (m ovpModel) imageStreamTag(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	from, found, _ := unstructured.NestedMap(u.Object, "tag", "from")
	if !found {
		return velero.NewRestoreItemActionExecuteOutput(u).WithoutRestore(), nil
	}
	unstructured.RemoveNestedField(u.Object, "tag", "annotations")
	if ns, _ := from["namespace"].(string); ns != "" && in.Restore.Spec.NamespaceMapping[ns] != "" {
		if err := unstructured.SetNestedField(u.Object, in.Restore.Spec.NamespaceMapping[ns], "tag", "from", "namespace"); err != nil {
			return nil, err
		}
	}
	return done(u)
}

// route empties a generated host (which the Route type then leaves out).
func (m ovpModel) route(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	if u.GetAnnotations()[keys.RouteHostGenerated] == "true" {
		unstructured.RemoveNestedField(u.Object, "spec", "host")
	}
	return done(u)
}

// service clears the externalIPs of a LoadBalancer service.
func (m ovpModel) service(in *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u := itemOf(in)
	if typ, _, _ := unstructured.NestedString(u.Object, "spec", "type"); typ == "LoadBalancer" {
		unstructured.RemoveNestedField(u.Object, "spec", "externalIPs")
	}
	return done(u)
}

// ferryActions returns ferry's actions for a kind, as registered in cmd/ferry-plugins.
func ferryActions(t *testing.T, kind string, target *testutil.Cluster) []step {
	log, _ := testutil.NewLogger()
	switch kind {
	case "Pod", "Deployment", "DeploymentConfig":
		return []step{NewPodSpecAction(log, target.Clients, configOf(t, nil)).Execute}
	case "BuildConfig":
		return []step{NewBuildConfigAction(log, target.Clients, configOf(t, nil)).Execute}
	case "ServiceAccount":
		return []step{NewServiceAccountAction(log).Execute}
	case "SecurityContextConstraints":
		return []step{NewSCCAction(log, target.Clients).Execute}
	case "RoleBinding":
		return []step{NewRoleBindingAction(log).Execute}
	case "Route":
		return []step{NewRouteAction(log).Execute}
	case "Service":
		return []step{NewServiceAction(log).Execute}
	case "ImageStreamTag":
		return []step{NewImageStreamTagAction(log, target.Clients, configOf(t, nil)).Execute}
	}
	t.Fatalf("no ferry action for %s", kind)
	return nil
}

// ovpTarget is an OpenShift target with the given internal registry, whose service accounts
// default and builder have a generated pull secret in each namespace (see targetSecret).
func ovpTarget(registry string) *testutil.Cluster {
	imageConfig := testutil.Object("config.openshift.io/v1", "Image", "", "cluster", map[string]any{
		"status.internalRegistryHostname": registry,
	})
	var objs []runtime.Object
	for _, ns := range []string{"a", "b", "c"} {
		for _, sa := range []string{"default", "builder"} {
			secret := targetSecret(sa, ns)
			objs = append(objs,
				builder.ForServiceAccount(ns, sa).ObjectMeta(builder.WithAnnotations(keys.InternalRegistryPullSecretRef, secret)).Result(),
				builder.ForSecret(ns, secret).ObjectMeta(builder.WithAnnotations(keys.InternalRegistryAuthTokenSA, sa)).Result())
		}
	}
	return testutil.NewCluster(testutil.OpenShift(), testutil.WithDynamicObjects(imageConfig), testutil.WithObjects(objs...))
}

// targetSecret is the pull secret the target generated for service account sa of namespace ns.
func targetSecret(sa, ns string) string { return sa + "-dockercfg-t" + ns + "001" }

// backupStamps are what both plugin sets' backup actions put on a workload of the source, whose
// internal registry is srcRegistry.
func backupStamps() map[string]string {
	return map[string]string{
		keys.SourceRegistry: srcRegistry, keys.SourceServerVersion: "1.31",
		keys.OVPBackupRegistryHostname: srcRegistry, ovpBackupServerVersion: "1.31",
	}
}

// ovpCase is one restore: the target's registry, the namespace mapping and the order.
type ovpCase struct {
	registry   string
	nsMap      map[string]string
	ferryFirst bool
}

// ns maps a namespace once: what one rewrite gives.
func (c ovpCase) ns(ns string) string { return mapNamespace(c.nsMap, ns) }

// twice maps a namespace twice. It is what fields both plugin sets map end up with when OVP
// runs after ferry (documented limitation; the same as once unless the mapping chains).
func (c ovpCase) twice(ns string) string {
	if c.ferryFirst {
		return c.ns(c.ns(ns))
	}
	return c.ns(ns)
}

// restoredStamps are a workload's annotations after the restore: ferry's stamps and OVP's backup
// registry stamp gone, OVP's other stamps there.
func (c ovpCase) restoredStamps() map[string]string {
	return map[string]string{ovpBackupServerVersion: "1.31", ovpRestoreServerVersion: "1.33", ovpRestoreRegistry: c.registry}
}

func strs(t *testing.T, u *unstructured.Unstructured, path ...string) []string {
	t.Helper()
	v, _, err := unstructured.NestedStringSlice(u.Object, path...)
	require.NoError(t, err)
	return v
}

func str(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedString(u.Object, path...)
	return v
}

// names returns the "name" of each element of the list at path (keyed by field when not "name").
func names(u *unstructured.Unstructured, field string, path ...string) []string {
	list, _, _ := unstructured.NestedSlice(u.Object, path...)
	var out []string
	for _, e := range list {
		out = append(out, fmt.Sprint(e.(map[string]any)[field]))
	}
	return out
}

func TestOneRewriteNextToOVP(t *testing.T) {
	podSpec := corev1.PodSpec{
		ServiceAccountName: "default",
		InitContainers:     []corev1.Container{{Name: "init", Image: srcRegistry + "/a/init:1"}},
		Containers: []corev1.Container{
			{Name: "web", Image: srcRegistry + "/a/web@sha256:aaaa"},
			{Name: "lib", Image: srcRegistry + "/b/lib:2"},
			{Name: "nginx", Image: "docker.io/library/nginx:1.27"},
		},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "default-dockercfg-src01"}, {Name: "custom"}},
	}
	wantImages := func(c ovpCase) []string {
		return []string{
			c.registry + "/" + c.ns("a") + "/init:1", c.registry + "/" + c.ns("a") + "/web@sha256:aaaa",
			c.registry + "/" + c.ns("b") + "/lib:2", "docker.io/library/nginx:1.27",
		}
	}
	podImages := func(u *unstructured.Unstructured, path ...string) []string {
		return append(names(u, "image", append(path, "initContainers")...), names(u, "image", append(path, "containers")...)...)
	}
	template := []string{"spec", "template", "spec"}

	fixtures := []struct {
		name      string
		item      func(t *testing.T) *unstructured.Unstructured // as backed up
		resources []string                                      // the restore's included resources (default: all)
		check     func(t *testing.T, c ovpCase, got *unstructured.Unstructured)
	}{
		{
			name: "Deployment: images once, pull secrets swapped, stamps",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Unstructured(t, &appsv1.Deployment{
					TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
					ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "web", Annotations: backupStamps()},
					Spec:       appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: podSpec}},
				})
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, wantImages(c), podImages(got, template...))
				assert.Equal(t, []string{targetSecret("default", c.ns("a")), "custom"}, names(got, "name", append(template, "imagePullSecrets")...))
				assert.Equal(t, c.restoredStamps(), got.GetAnnotations())
			},
		},
		{
			name: "Pod: images once, pull secrets swapped by both to the same secret",
			item: func(t *testing.T) *unstructured.Unstructured {
				p := builder.ForPod("a", "web-0").ObjectMeta(builder.WithAnnotationsMap(backupStamps())).Result()
				p.Spec = podSpec
				return testutil.Unstructured(t, p)
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, wantImages(c), podImages(got, "spec"))
				assert.Equal(t, []string{targetSecret("default", c.ns("a")), "custom"}, names(got, "name", "spec", "imagePullSecrets"))
				assert.Equal(t, c.restoredStamps(), got.GetAnnotations())
			},
		},
		{
			name: "DeploymentConfig: images and image-change trigger once",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Object("apps.openshift.io/v1", "DeploymentConfig", "a", "web", map[string]any{
					"metadata.annotations":          toAny(backupStamps()),
					"spec.template.spec.containers": []any{map[string]any{"name": "web", "image": srcRegistry + "/a/web@sha256:aaaa"}},
					"spec.triggers": []any{map[string]any{"type": "ImageChange", "imageChangeParams": map[string]any{
						"from":               map[string]any{"kind": "ImageStreamTag", "namespace": "a", "name": "web:latest"},
						"lastTriggeredImage": srcRegistry + "/a/web@sha256:aaaa",
					}}},
				})
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				img := c.registry + "/" + c.ns("a") + "/web@sha256:aaaa"
				assert.Equal(t, []string{img}, names(got, "image", append(template, "containers")...))
				triggers, _, _ := unstructured.NestedSlice(got.Object, "spec", "triggers")
				params := triggers[0].(map[string]any)["imageChangeParams"].(map[string]any)
				assert.Equal(t, c.ns("a"), params["from"].(map[string]any)["namespace"])
				assert.Equal(t, img, params["lastTriggeredImage"])
				assert.Equal(t, c.restoredStamps(), got.GetAnnotations())
			},
		},
		{
			name: "BuildConfig: DockerImage references once, push and pull secrets swapped",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Object("build.openshift.io/v1", "BuildConfig", "a", "app", map[string]any{
					"metadata.annotations": toAny(backupStamps()),
					"spec.output": map[string]any{
						"to":         map[string]any{"kind": "DockerImage", "name": srcRegistry + "/a/app:latest"},
						"pushSecret": map[string]any{"name": "builder-dockercfg-src01"},
					},
					"spec.strategy.sourceStrategy": map[string]any{
						"from":       map[string]any{"kind": "DockerImage", "name": srcRegistry + "/b/builder:1"},
						"pullSecret": map[string]any{"name": "builder-dockercfg-src01"},
					},
				})
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, c.registry+"/"+c.ns("a")+"/app:latest", str(got, "spec", "output", "to", "name"))
				assert.Equal(t, c.registry+"/"+c.ns("b")+"/builder:1", str(got, "spec", "strategy", "sourceStrategy", "from", "name"))
				assert.Equal(t, targetSecret("builder", c.ns("a")), str(got, "spec", "output", "pushSecret", "name"))
				assert.Equal(t, targetSecret("builder", c.ns("a")), str(got, "spec", "strategy", "sourceStrategy", "pullSecret", "name"))
				assert.Equal(t, c.restoredStamps(), got.GetAnnotations())
			},
		},
		{
			name: "ServiceAccount: every generated pull secret reference goes (OVP drops one per list, ferry all)",
			item: func(t *testing.T) *unstructured.Unstructured {
				sa := builder.ForServiceAccount("a", "default").Result()
				sa.Secrets = []corev1.ObjectReference{{Name: "default-token-x1"}, {Name: "default-dockercfg-src01"}}
				sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "default-dockercfg-src01"}, {Name: "default-dockercfg-old02"}, {Name: "custom"}}
				return testutil.Unstructured(t, sa)
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, []string{"default-token-x1"}, names(got, "name", "secrets"))
				assert.Equal(t, []string{"custom"}, names(got, "name", "imagePullSecrets"))
			},
		},
		{
			name: "SecurityContextConstraints new on the target: users and groups mapped",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Object("security.openshift.io/v1", "SecurityContextConstraints", "", "app-scc", map[string]any{
					"users":  []any{"system:serviceaccount:a:runner", "system:serviceaccount:b:worker", "system:admin"},
					"groups": []any{"system:serviceaccounts:a"},
				})
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, []string{"system:serviceaccount:" + c.twice("a") + ":runner", "system:serviceaccount:" + c.twice("b") + ":worker", "system:admin"}, strs(t, got, "users"))
				assert.Equal(t, []string{"system:serviceaccounts:" + c.ns("a")}, strs(t, got, "groups"), "OVP does not map groups")
			},
		},
		{
			name: "RoleBinding of authorization.openshift.io: subjects, names and roleRef mapped",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Object("authorization.openshift.io/v1", "RoleBinding", "a", "edit", map[string]any{
					"subjects": []any{
						map[string]any{"kind": "ServiceAccount", "name": "runner", "namespace": "a"},
						map[string]any{"kind": "SystemGroup", "name": "system:serviceaccounts:b"},
						map[string]any{"kind": "User", "name": "system:serviceaccount:a:runner"},
					},
					"userNames":  []any{"system:serviceaccount:a:runner"},
					"groupNames": []any{"system:serviceaccounts:b"},
					"roleRef":    map[string]any{"name": "edit", "namespace": "a"},
				})
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, []string{c.twice("a"), "<nil>", "<nil>"}, names(got, "namespace", "subjects"))
				assert.Equal(t, []string{"runner", "system:serviceaccounts:" + c.twice("b"), "system:serviceaccount:" + c.ns("a") + ":runner"}, names(got, "name", "subjects"), "OVP does not map User subjects")
				assert.Equal(t, []string{"system:serviceaccount:" + c.twice("a") + ":runner"}, strs(t, got, "userNames"))
				assert.Equal(t, []string{"system:serviceaccounts:" + c.twice("b")}, strs(t, got, "groupNames"))
				assert.Equal(t, c.twice("a"), str(got, "roleRef", "namespace"))
			},
		},
		{
			name: "ImageStreamTag in a restore of tags only: the tag it follows mapped",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Object("image.openshift.io/v1", "ImageStreamTag", "a", "web:prod", map[string]any{
					"tag": map[string]any{"name": "prod", "from": map[string]any{"kind": "ImageStreamTag", "namespace": "b", "name": "base:1"}},
				})
			},
			resources: []string{"imagestreamtags"},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				assert.Equal(t, c.twice("b"), str(got, "tag", "from", "namespace"))
				assert.Equal(t, "base:1", str(got, "tag", "from", "name"))
			},
		},
		{
			name: "Route: a generated host goes",
			item: func(t *testing.T) *unstructured.Unstructured {
				return testutil.Object("route.openshift.io/v1", "Route", "a", "web", map[string]any{
					"metadata.annotations": map[string]any{keys.RouteHostGenerated: "true"},
					"spec.host":            "web-a.apps.source.example",
					"spec.to":              map[string]any{"kind": "Service", "name": "web"},
				})
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				_, found, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "host")
				assert.False(t, found)
				assert.Equal(t, "web", str(got, "spec", "to", "name"))
			},
		},
		{
			name: "Service: a LoadBalancer's externalIPs go",
			item: func(t *testing.T) *unstructured.Unstructured {
				s := builder.ForService("a", "lb").Result()
				s.Spec.Type, s.Spec.ExternalIPs = corev1.ServiceTypeLoadBalancer, []string{"192.0.2.10"}
				return testutil.Unstructured(t, s)
			},
			check: func(t *testing.T, c ovpCase, got *unstructured.Unstructured) {
				_, found, _ := unstructured.NestedFieldNoCopy(got.Object, "spec", "externalIPs")
				assert.False(t, found)
				assert.Equal(t, "LoadBalancer", str(got, "spec", "type"))
			},
		},
	}

	registries := []struct {
		name     string
		target   string
		restored bool // the source's objects were themselves restored by OADP: they carry OVP's restore stamp
	}{
		{"same registry host on both clusters", srcRegistry, false},
		{"different registry hosts", tgtRegistry, false},
		{"same registry host, source objects restored by OADP before", srcRegistry, true},
	}
	mappings := []struct {
		name  string
		pairs []string
	}{
		{"a:b", []string{"a", "b"}},
		{"a:b,b:a", []string{"a", "b", "b", "a"}},
		{"a:b,b:c", []string{"a", "b", "b", "c"}},
		{"b:c (a kept)", []string{"b", "c"}},
		{"no mapping", nil},
	}
	for _, f := range fixtures {
		for _, r := range registries {
			for _, m := range mappings {
				for _, ferryFirst := range []bool{true, false} {
					order := "OVP then ferry"
					if ferryFirst {
						order = "ferry then OVP"
					}
					t.Run(strings.Join([]string{f.name, r.name, m.name, order}, "/"), func(t *testing.T) {
						restore := restoreWith(m.pairs...)
						restore.Spec.IncludedResources = f.resources
						c := ovpCase{registry: r.target, nsMap: restore.Spec.NamespaceMapping, ferryFirst: ferryFirst}
						backedUp := f.item(t)
						if r.restored && backedUp.GetAnnotations()[keys.OVPBackupRegistryHostname] != "" {
							ann := backedUp.GetAnnotations()
							ann[ovpRestoreRegistry] = srcRegistry
							backedUp.SetAnnotations(ann)
						}
						target := ovpTarget(r.target)
						ovp := ovpModel{registry: r.target, kube: target.Kube}
						ferry := ferryActions(t, backedUp.GetKind(), target)
						steps := append(ovp.actions(backedUp.GetKind()), ferry...)
						if ferryFirst {
							steps = append(ferry, ovp.actions(backedUp.GetKind())...)
						}
						got, skipped := restoreChain(t, backedUp, restore, steps...)
						require.False(t, skipped)
						f.check(t, c, got)
					})
				}
			}
		}
	}
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
