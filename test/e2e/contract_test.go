//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	securityv1 "github.com/openshift/api/security/v1"
	securityclient "github.com/openshift/client-go/security/clientset/versioned"
	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/clientmgmt"
	"github.com/vmware-tanzu/velero/pkg/plugin/clientmgmt/process"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework/common"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/test/stack"
)

// servePluginsIfAsked makes the test binary stand in for the velero binary: Velero's plugin
// registry always runs os.Args[0] with "run-plugins" to list Velero's built-in plugins, and here
// there are none. It returns true when the process served (and must exit).
func servePluginsIfAsked() bool {
	if len(os.Args) < 2 || os.Args[1] != "run-plugins" {
		return false
	}
	framework.NewServer().Serve()
	return true
}

// wantPlugins is every action ferry-plugins must register, by the kind it registers as.
// Velero's registry also lists each v1 action under the v2 kind (it adapts them).
var wantPlugins = map[common.PluginKind][]string{
	common.PluginKindBackupItemAction:   {"ferry.dev/namespace-backup", "ferry.dev/pv-backup", "ferry.dev/serviceaccount-backup", "ferry.dev/source-info-backup", "ferry.dev/statefulset-backup"},
	common.PluginKindBackupItemActionV2: {"ferry.dev/imagestream-backup", "ferry.dev/pvc-backup"},
	common.PluginKindRestoreItemAction: {
		"ferry.dev/buildconfig-restore", "ferry.dev/podspec-restore", "ferry.dev/pv-restore",
		"ferry.dev/pvc-restore", "ferry.dev/rolebinding-restore", "ferry.dev/route-restore", "ferry.dev/scc-restore",
		"ferry.dev/service-restore", "ferry.dev/serviceaccount-restore", "ferry.dev/skip-restore", "ferry.dev/statefulset-restore",
		"ferry.dev/unquiesce-restore",
	},
	common.PluginKindRestoreItemActionV2: {"ferry.dev/imagestream-restore", "ferry.dev/imagestreamtag-restore"},
}

// listedAs is what the registry lists under kind: its own actions, and the v1 actions it adapts.
func listedAs(kind common.PluginKind) []string {
	out := append([]string{}, wantPlugins[kind]...)
	switch kind {
	case common.PluginKindBackupItemActionV2:
		out = append(out, wantPlugins[common.PluginKindBackupItemAction]...)
	case common.PluginKindRestoreItemActionV2:
		out = append(out, wantPlugins[common.PluginKindRestoreItemAction]...)
	}
	return out
}

// TestPluginContract loads the built ferry-plugins binary through Velero's own plugin client
// code (the registry, manager and restartable processes the Velero server uses), lists every
// registered action with what it applies to, and executes each over gRPC on real objects in a
// real API server. Every registered action must be exercised here: a new one fails this test
// until it is added.
func TestPluginContract(t *testing.T) {
	s := stacks.Get(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c := s.Source

	// Plugins inherit this process's environment: they reach the source cluster as Velero's
	// plugins do out of cluster.
	t.Setenv("KUBECONFIG", c.Kubeconfig)
	t.Setenv("VELERO_NAMESPACE", "velero")
	dir := t.TempDir()
	copyExecutable(t, filepath.Join(s.FerryBinDir, "ferry-plugins"), filepath.Join(dir, "ferry-plugins"))
	log := logrus.New()
	log.Out = io.Discard
	registry := process.NewRegistry(dir, log, logrus.InfoLevel)
	require.NoError(t, registry.DiscoverPlugins())
	manager := clientmgmt.NewManager(log, logrus.InfoLevel, registry)
	defer manager.CleanupClients()

	// 1. Registration: names and what each action applies to, as Velero sees them.
	var table []string
	for kind := range wantPlugins {
		want := listedAs(kind)
		var got []string
		for _, id := range registry.List(kind) {
			if strings.HasPrefix(id.Name, "ferry.dev/") {
				got = append(got, id.Name)
			}
		}
		assert.ElementsMatch(t, want, got, "registered %s", kind)
	}
	exercised := map[string]bool{}

	// 2. Fixtures in the real API server.
	ns := s.Namespace(t, "contract")
	create(t, ctx, c, pvc(ns, "data"), secret(ns, "db", map[string]string{"password": "x"}))
	pv := boundVolume(t, ctx, c, ns, "data")
	// What a running data mover leaves in Velero's namespace: a fresh Lease and the request key.
	renewLease(t, ctx, c)
	require.NoError(t, kube.EnsureRequestKey(ctx, &kube.Clients{Kube: c.Kube, Namespace: "velero"}))
	sec, err := securityclient.NewForConfig(c.Config)
	require.NoError(t, err)
	sccName := "contract-" + ns
	_, err = sec.SecurityV1().SecurityContextConstraints().Create(ctx, &securityv1.SecurityContextConstraints{
		ObjectMeta:         metav1.ObjectMeta{Name: sccName},
		Users:              []string{"system:serviceaccount:" + ns + ":runner"},
		RunAsUser:          securityv1.RunAsUserStrategyOptions{Type: securityv1.RunAsUserStrategyRunAsAny},
		SELinuxContext:     securityv1.SELinuxContextStrategyOptions{Type: securityv1.SELinuxStrategyRunAsAny},
		FSGroup:            securityv1.FSGroupStrategyOptions{Type: securityv1.FSGroupStrategyRunAsAny},
		SupplementalGroups: securityv1.SupplementalGroupsStrategyOptions{Type: securityv1.SupplementalGroupsStrategyRunAsAny},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = sec.SecurityV1().SecurityContextConstraints().Delete(context.Background(), sccName, metav1.DeleteOptions{})
	})
	backup := builder.ForBackup("velero", "contract").ObjectMeta(builder.WithLabels(keys.Migration, "stage"), builder.WithUID("c0ffee00-0000-4000-8000-00000000c0de")).Phase(velerov1.BackupPhaseInProgress).Result()
	restore := builder.ForRestore("velero", "contract").Backup("contract").NamespaceMappings(ns, ns+"-new").Result()

	// 3. Backup item actions, v1 adapted to v2 as Velero does.
	bias, err := manager.GetBackupItemActionsV2()
	require.NoError(t, err)
	for _, a := range bias {
		name := a.Name()
		if !strings.HasPrefix(name, "ferry.dev/") {
			continue
		}
		sel, err := a.AppliesTo()
		require.NoError(t, err, name)
		table = append(table, fmt.Sprintf("%-36s BIA  %v", name, sel.IncludedResources))
		exercised[name] = true
		switch name {
		case "ferry.dev/pvc-backup":
			live, err := c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			require.NoError(t, err)
			item := toUnstructured(t, live, "v1", "PersistentVolumeClaim")
			out, _, op, _, err := a.Execute(item, backup)
			require.NoError(t, err, name)
			assert.Equal(t, ns+"/data/"+string(backup.UID), op)
			assert.Equal(t, "copy", out.(*unstructured.Unstructured).GetAnnotations()[keys.PVAction])
			live, err = c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			require.NoError(t, err)
			assert.Equal(t, string(backup.UID), live.Annotations[keys.TransferID], "the live PVC carries the request")
			p, err := a.Progress(op, backup)
			require.NoError(t, err)
			assert.False(t, p.Completed)
			assert.Contains(t, p.Description, "Waiting for ferry-datamover")
			require.NoError(t, a.Cancel(op, backup))
			live, _ = c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			assert.Equal(t, string(backup.UID), live.Annotations[keys.TransferCancel])
		case "ferry.dev/pv-backup":
			out, _, _, _, err := a.Execute(toUnstructured(t, pv, "v1", "PersistentVolume"), backup)
			require.NoError(t, err, name)
			assert.Equal(t, "copy", out.(*unstructured.Unstructured).GetAnnotations()[keys.PVAction])
		case "ferry.dev/serviceaccount-backup":
			sa := builder.ForServiceAccount(ns, "runner").Result()
			_, extra, _, _, err := a.Execute(toUnstructured(t, sa, "v1", "ServiceAccount"), backup)
			require.NoError(t, err, name)
			require.Len(t, extra, 1)
			assert.Equal(t, sccName, extra[0].Name)
		case "ferry.dev/source-info-backup":
			d := deployment(ns, "web", 1, c.RegistryHost+"/"+ns+"/web:1")
			out, _, _, _, err := a.Execute(toUnstructured(t, d, "apps/v1", "Deployment"), backup)
			require.NoError(t, err, name)
			assert.Equal(t, c.RegistryHost, out.(*unstructured.Unstructured).GetAnnotations()[keys.SourceRegistry], "discovered through images.config.openshift.io")
		case "ferry.dev/namespace-backup":
			nsObj := objectOf("v1", "Namespace", "", ns, nil)
			nsObj.SetAnnotations(map[string]string{keys.NamespaceNodeSelector: "region=east"})
			out, _, _, _, err := a.Execute(nsObj, backup)
			require.NoError(t, err, name)
			assert.NotContains(t, out.(*unstructured.Unstructured).GetAnnotations(), keys.NamespaceNodeSelector, "the source's node selector stays behind")
		case "ferry.dev/statefulset-backup":
			sts := statefulSetObject(t, ns, "db", "standard")
			out, _, _, _, err := a.Execute(sts, backup)
			require.NoError(t, err, name)
			assert.Contains(t, out.(*unstructured.Unstructured).GetAnnotations()[keys.ClaimTemplates], `"data"`, "the claim template's copy is recorded")
		case "ferry.dev/imagestream-backup":
			is := imageStreamObject(ns, "web", map[string]string{keys.SkipImageCopy: "true"})
			out, _, op, _, err := a.Execute(is, backup)
			require.NoError(t, err, name)
			assert.Empty(t, op, "skip-image-copy: no operation")
			assert.NotNil(t, out)
		default:
			t.Errorf("no contract check for %s", name)
		}
	}

	// 4. Restore item actions over gRPC: the item goes through Velero's JSON round trips.
	rias, err := manager.GetRestoreItemActionsV2()
	require.NoError(t, err)
	for _, a := range rias {
		name := a.Name()
		if !strings.HasPrefix(name, "ferry.dev/") {
			continue
		}
		sel, err := a.AppliesTo()
		require.NoError(t, err, name)
		table = append(table, fmt.Sprintf("%-36s RIA  %v", name, sel.IncludedResources))
		exercised[name] = true
		in := restoreInputFor(t, name, ns, c)
		in.Restore = restore
		out, err := a.Execute(in)
		require.NoError(t, err, name)
		checkRestoreOutput(t, name, ns, out)
	}
	sort.Strings(table)
	t.Logf("ferry-plugins as Velero loads it:\n%s", strings.Join(table, "\n"))
	for _, names := range wantPlugins {
		for _, n := range names {
			assert.True(t, exercised[n], "%s was never executed over gRPC", n)
		}
	}
}

// restoreInputFor builds a realistic restore input for the action called name.
func restoreInputFor(t *testing.T, name, ns string, c *stack.Cluster) *velero.RestoreItemActionExecuteInput {
	t.Helper()
	var u *unstructured.Unstructured
	switch name {
	case "ferry.dev/route-restore":
		u = route(t, ns, "web", "web", "web-"+ns+".apps.source.example.com", true)
	case "ferry.dev/service-restore":
		s := service(ns, "web")
		s.Spec.Type = corev1.ServiceTypeLoadBalancer
		s.Spec.ExternalIPs = []string{"192.0.2.10"}
		u = toUnstructured(t, s, "v1", "Service")
	case "ferry.dev/podspec-restore", "ferry.dev/unquiesce-restore":
		d := deployment(ns, "web", 0, "image-registry.source.svc:5000/"+ns+"/web@sha256:"+strings.Repeat("a", 64))
		d.Annotations = map[string]string{keys.SourceRegistry: "image-registry.source.svc:5000", keys.PreQuiesceReplicas: "3"}
		d.Labels = map[string]string{keys.Quiesced: "t1"}
		d.Spec.Template.Spec.NodeName = "source-node-1"
		u = toUnstructured(t, d, "apps/v1", "Deployment")
	case "ferry.dev/buildconfig-restore":
		u = objectOf("build.openshift.io/v1", "BuildConfig", ns, "web", map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{keys.SourceRegistry: "image-registry.source.svc:5000"}},
			"spec":     map[string]any{"output": map[string]any{"to": map[string]any{"kind": "DockerImage", "name": "image-registry.source.svc:5000/" + ns + "/web:latest"}}},
		})
	case "ferry.dev/pvc-restore":
		p := pvc(ns, "data")
		p.Spec.VolumeName = "pv-1"
		p.Annotations = map[string]string{keys.PVAction: "copy", keys.TransferTarget: ns + "-new/data", keys.TransferStorageClass: "fast", keys.TransferID: "u1"}
		u = toUnstructured(t, p, "v1", "PersistentVolumeClaim")
	case "ferry.dev/pv-restore":
		pv := builder.ForPersistentVolume("pv-1").ObjectMeta(builder.WithAnnotations(keys.PVAction, "copy")).ClaimRef(ns, "data").ReclaimPolicy(corev1.PersistentVolumeReclaimRetain).Result()
		u = toUnstructured(t, pv, "v1", "PersistentVolume")
	case "ferry.dev/rolebinding-restore":
		u = objectOf("rbac.authorization.k8s.io/v1", "RoleBinding", ns, "edit", map[string]any{
			"subjects": []any{map[string]any{"kind": "User", "name": "system:serviceaccount:" + ns + ":runner"}},
			"roleRef":  map[string]any{"kind": "ClusterRole", "name": "edit", "apiGroup": "rbac.authorization.k8s.io"},
		})
	case "ferry.dev/scc-restore":
		u = objectOf("security.openshift.io/v1", "SecurityContextConstraints", "", "new-"+ns, map[string]any{"users": []any{"system:serviceaccount:" + ns + ":runner"}})
	case "ferry.dev/serviceaccount-restore":
		sa := builder.ForServiceAccount(ns, "runner").Result()
		sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "runner-dockercfg-abcde"}}
		u = toUnstructured(t, sa, "v1", "ServiceAccount")
	case "ferry.dev/skip-restore":
		u = objectOf("build.openshift.io/v1", "Build", ns, "web-1", nil)
	case "ferry.dev/statefulset-restore":
		u = statefulSetObject(t, ns, "db", "standard")
		u.SetAnnotations(map[string]string{keys.ClaimTemplates: `{"data":{"storageClass":"fast","accessModes":["ReadWriteMany"]}}`})
	case "ferry.dev/imagestream-restore":
		u = imageStreamObject(ns, "web", nil)
	case "ferry.dev/imagestreamtag-restore":
		u = objectOf("image.openshift.io/v1", "ImageStreamTag", ns, "web:latest", map[string]any{
			"tag": map[string]any{"name": "latest", "from": map[string]any{"kind": "DockerImage", "name": "quay.io/org/web:1"}},
		})
	default:
		t.Fatalf("no contract input for %s", name)
	}
	return &velero.RestoreItemActionExecuteInput{Item: u.DeepCopy(), ItemFromBackup: u.DeepCopy()}
}

func checkRestoreOutput(t *testing.T, name, ns string, out *velero.RestoreItemActionExecuteOutput) {
	t.Helper()
	u, _ := out.UpdatedItem.(*unstructured.Unstructured)
	str := func(path ...string) string { s, _, _ := unstructured.NestedString(u.Object, path...); return s }
	switch name {
	case "ferry.dev/route-restore":
		_, found, _ := unstructured.NestedString(u.Object, "spec", "host")
		assert.False(t, found, name)
	case "ferry.dev/service-restore":
		_, found, _ := unstructured.NestedSlice(u.Object, "spec", "externalIPs")
		assert.False(t, found, name)
	case "ferry.dev/podspec-restore":
		assert.Empty(t, str("spec", "template", "spec", "nodeName"), name)
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		img := containers[0].(map[string]any)["image"].(string)
		assert.Contains(t, img, "/"+ns+"-new/web@sha256:", "namespace mapping followed: %s", img)
	case "ferry.dev/unquiesce-restore":
		n, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
		assert.Equal(t, int64(3), n, name)
	case "ferry.dev/buildconfig-restore":
		assert.Contains(t, str("spec", "output", "to", "name"), "/"+ns+"-new/web:latest", name)
	case "ferry.dev/pvc-restore":
		assert.Equal(t, "fast", str("spec", "storageClassName"), name)
		assert.Empty(t, str("spec", "volumeName"), name)
	case "ferry.dev/pv-restore", "ferry.dev/skip-restore":
		assert.True(t, out.SkipRestore, name)
	case "ferry.dev/rolebinding-restore":
		subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
		assert.Equal(t, "system:serviceaccount:"+ns+"-new:runner", subjects[0].(map[string]any)["name"], name)
	case "ferry.dev/scc-restore":
		users, _, _ := unstructured.NestedStringSlice(u.Object, "users")
		assert.Equal(t, []string{"system:serviceaccount:" + ns + "-new:runner"}, users, name)
	case "ferry.dev/serviceaccount-restore":
		_, found, _ := unstructured.NestedSlice(u.Object, "imagePullSecrets")
		assert.False(t, found, name)
	case "ferry.dev/statefulset-restore":
		templates, _, _ := unstructured.NestedSlice(u.Object, "spec", "volumeClaimTemplates")
		require.Len(t, templates, 1, name)
		class, _, _ := unstructured.NestedString(templates[0].(map[string]any), "spec", "storageClassName")
		assert.Equal(t, "fast", class, name)
		assert.NotContains(t, u.GetAnnotations(), keys.ClaimTemplates, name)
	case "ferry.dev/imagestream-restore", "ferry.dev/imagestreamtag-restore":
		assert.NotNil(t, out, name)
	}
}

func toUnstructured(t *testing.T, obj runtime.Object, apiVersion, kind string) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	require.NoError(t, err)
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	return u
}

func objectOf(apiVersion, kind, ns, name string, fields map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range fields {
		u.Object[k] = v
	}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

func imageStreamObject(ns, name string, ann map[string]string) *unstructured.Unstructured {
	u := objectOf("image.openshift.io/v1", "ImageStream", ns, name, map[string]any{"spec": map[string]any{}})
	if ann != nil {
		u.SetAnnotations(ann)
	}
	return u
}

// boundVolume waits for the PVC to bind (the controller manager's host-path provisioner) and
// returns its PV.
func boundVolume(t *testing.T, ctx context.Context, c *stack.Cluster, ns, claim string) *corev1.PersistentVolume {
	t.Helper()
	var pv *corev1.PersistentVolume
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		p, err := c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		require.NoError(ct, err)
		require.Equal(ct, corev1.ClaimBound, p.Status.Phase)
		pv, err = c.Kube.CoreV1().PersistentVolumes().Get(ctx, p.Spec.VolumeName, metav1.GetOptions{})
		require.NoError(ct, err)
	}, time.Minute, 500*time.Millisecond)
	return pv
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err, "ferry-plugins must be built first (make build)")
	require.NoError(t, os.WriteFile(to, b, 0o755))
}

// statefulSetObject is a StatefulSet of one replica with one claim template, "data", of class.
func statefulSetObject(t *testing.T, ns, name, class string) *unstructured.Unstructured {
	t.Helper()
	one := int32(1)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.StatefulSetSpec{Replicas: &one, VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
			ObjectMeta: metav1.ObjectMeta{Name: "data"},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class,
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
		}}},
	}
	return toUnstructured(t, sts, "apps/v1", "StatefulSet")
}

// renewLease makes the data mover's Lease look held now, as a running ferry-datamover keeps it.
func renewLease(t *testing.T, ctx context.Context, c *stack.Cluster) {
	t.Helper()
	leases := c.Kube.CoordinationV1().Leases("velero")
	seconds := int32(15)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, operation.SidecarLease, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: operation.SidecarLease},
			Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: &seconds, RenewTime: &now}}, metav1.CreateOptions{})
		require.NoError(t, err)
		return
	}
	require.NoError(t, err)
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	require.NoError(t, err)
}
