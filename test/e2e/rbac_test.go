//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/test/stack"
)

// identity is a service account ferry runs as (or hands to a registry), on one cluster.
type identity struct {
	title     string
	cluster   func(*stack.Stack) *stack.Cluster
	namespace string
	name      string
}

func (i identity) user() string { return "system:serviceaccount:" + i.namespace + ":" + i.name }

var (
	datamover      = identity{"The data mover on the source (Velero's service account)", source, stack.DatamoverNamespace, stack.DatamoverServiceAccount}
	targetIdentity = identity{"The data mover on the target (`ferry-target`)", target, stack.TargetNamespace, stack.TargetServiceAccount}
	sourceRegistry = identity{"Image pulls on the source (`ferry-registry`)", source, "velero", "ferry-registry"}
	targetRegistry = identity{"Image pushes on the target (`ferry-registry`)", target, stack.TargetNamespace, "ferry-registry"}
	identities     = []identity{datamover, targetIdentity, sourceRegistry, targetRegistry}
)

func source(s *stack.Stack) *stack.Cluster { return s.Source }
func target(s *stack.Stack) *stack.Cluster { return s.Target }

// rbacDoc is what `kubectl auth can-i --list` shows for each identity, kept equal to the API
// server's answer by TestIdentities (FERRY_UPDATE_DOCS=1 rewrites it).
const rbacDoc = "docs/rbac.md"

// TestIdentities applies deploy/ to the stack as an admin would and shows that each identity
// ferry runs as has what it needs and nothing a tenant's data or another namespace's Secrets
// would be at risk from: a SubjectAccessReview per claim of the README's identities table, the
// transfer-pod policy refusing a tenant (and ferry itself with a foreign image), and
// docs/rbac.md equal to `kubectl auth can-i --list` for every identity.
func TestIdentities(t *testing.T) {
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// Configured as an admin does (the base ferry-config the pool's tests share): the policy's
	// parameters then allow the stack's transfer image, whichever test on the stack comes first.
	require.NoError(t, s.ConfigureFerry(ctx, baseFerryConfig))
	app := s.Namespace(t, "tenant")
	require.NoError(t, s.Target.CreateNamespace(ctx, app, nil))

	type check struct {
		who                  identity
		ns, verb, group, res string
		sub, name            string
		want                 bool
	}
	checks := []check{
		// the data mover, source
		{who: datamover, ns: app, verb: "patch", res: "persistentvolumeclaims", want: true},
		{who: datamover, ns: app, verb: "delete", res: "persistentvolumeclaims"},
		{who: datamover, verb: "delete", res: "persistentvolumes"},
		{who: datamover, ns: app, verb: "create", res: "pods", want: true},
		{who: datamover, ns: app, verb: "create", res: "pods", sub: "exec"},
		{who: datamover, ns: app, verb: "update", res: "pods", sub: "ephemeralcontainers"},
		{who: datamover, ns: app, verb: "get", res: "pods", sub: "log", want: true},
		{who: datamover, ns: app, verb: "get", res: "secrets", want: true},
		{who: datamover, ns: app, verb: "list", res: "secrets"},
		{who: datamover, ns: app, verb: "watch", res: "secrets"},
		{who: datamover, ns: app, verb: "update", group: "apps", res: "deployments", want: true},
		{who: datamover, ns: app, verb: "delete", group: "apps", res: "deployments"},
		{who: datamover, ns: app, verb: "list", res: "services"},
		{who: datamover, verb: "delete", res: "namespaces"},
		{who: datamover, ns: "velero", verb: "get", res: "configmaps", name: "ferry-config", want: true},
		{who: datamover, ns: "velero", verb: "get", res: "configmaps", name: "other"},
		{who: datamover, ns: "velero", verb: "create", res: "serviceaccounts", sub: "token", name: "ferry-registry", want: true},
		{who: datamover, ns: "velero", verb: "create", res: "serviceaccounts", sub: "token", name: "velero"},
		{who: datamover, ns: "velero", verb: "get", group: "velero.io", res: "backups", want: true},
		{who: datamover, ns: "velero", verb: "create", group: "velero.io", res: "backups"},
		{who: datamover, ns: "velero", verb: "delete", group: "velero.io", res: "backups"},
		{who: datamover, verb: "bind", group: "rbac.authorization.k8s.io", res: "clusterroles", name: "ferry-transfer-scc", want: true},
		{who: datamover, verb: "bind", group: "rbac.authorization.k8s.io", res: "clusterroles", name: "cluster-admin"},
		{who: datamover, verb: "create", group: "rbac.authorization.k8s.io", res: "clusterrolebindings"},
		{who: datamover, ns: app, verb: "update", group: "image.openshift.io", res: "imagestreams", sub: "layers"},
		// ferry-target, target
		{who: targetIdentity, verb: "create", res: "namespaces", want: true},
		{who: targetIdentity, verb: "delete", res: "namespaces"},
		{who: targetIdentity, ns: app, verb: "create", res: "persistentvolumeclaims", want: true},
		{who: targetIdentity, ns: app, verb: "delete", res: "persistentvolumeclaims"},
		{who: targetIdentity, ns: app, verb: "create", res: "pods", want: true},
		{who: targetIdentity, ns: app, verb: "create", res: "pods", sub: "exec"},
		{who: targetIdentity, ns: app, verb: "get", res: "secrets", want: true},
		{who: targetIdentity, ns: app, verb: "list", res: "secrets"},
		{who: targetIdentity, ns: app, verb: "update", group: "apps", res: "deployments"},
		{who: targetIdentity, ns: stack.TargetNamespace, verb: "create", res: "serviceaccounts", sub: "token", name: "ferry-registry", want: true},
		{who: targetIdentity, ns: stack.TargetNamespace, verb: "create", res: "serviceaccounts", sub: "token", name: "ferry-target"},
		{who: targetIdentity, ns: app, verb: "update", group: "image.openshift.io", res: "imagestreams", sub: "layers"},
		// the registry identities: images and nothing else
		{who: sourceRegistry, ns: app, verb: "get", group: "image.openshift.io", res: "imagestreams", sub: "layers", want: true},
		{who: sourceRegistry, ns: app, verb: "update", group: "image.openshift.io", res: "imagestreams", sub: "layers"},
		{who: sourceRegistry, ns: app, verb: "get", res: "secrets"},
		{who: sourceRegistry, ns: app, verb: "create", res: "pods"},
		{who: targetRegistry, ns: app, verb: "update", group: "image.openshift.io", res: "imagestreams", sub: "layers", want: true},
		{who: targetRegistry, ns: app, verb: "get", res: "secrets"},
		{who: targetRegistry, ns: app, verb: "create", res: "pods"},
	}
	for _, c := range checks {
		attrs := &authorizationv1.ResourceAttributes{Namespace: c.ns, Verb: c.verb, Group: c.group, Resource: c.res, Subresource: c.sub, Name: c.name}
		sar, err := c.who.cluster(s).Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: c.who.user(), ResourceAttributes: attrs,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + c.who.namespace, "system:authenticated"}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		assert.Equal(t, c.want, sar.Status.Allowed, "%s may %s %s/%s %s (namespace %q, name %q)", c.who.user(), c.verb, c.res, c.sub, c.group, c.ns, c.name)
	}

	// The transfer-pod policy: a tenant with edit cannot run pods as ferry-transfer (on
	// OpenShift: borrow its SCC), and ferry itself only with its own image and command.
	mallory := tenant(t, ctx, s.Source, app, "mallory")
	transferPod := func(image string, command ...string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: app, GenerateName: "borrowed-", Labels: map[string]string{keys.ManagedByLabel: keys.ManagedByValue}},
			Spec:       corev1.PodSpec{ServiceAccountName: "ferry-transfer", Containers: []corev1.Container{{Name: "c", Image: image, Command: command}}},
		}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	// The service account exists where ferry has run a transfer (ServiceAccount admission would
	// refuse the pods before the policy otherwise).
	_, err := s.Source.Kube.CoreV1().ServiceAccounts(app).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ferry-transfer"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = mallory.CoreV1().Pods(app).Create(ctx, transferPod(s.TransferImage(), "ferry-datamover", "serve"), dryRun)
	require.Error(t, err, "a tenant runs a pod as ferry-transfer")
	assert.Contains(t, err.Error(), "only ferry-datamover may run pods as the ferry-transfer service account")
	ferry := impersonate(t, s.Source, datamover.user(), datamover.namespace)
	_, err = ferry.CoreV1().Pods(app).Create(ctx, transferPod("docker.io/library/busybox:1.36", "ferry-datamover", "serve"), dryRun)
	require.Error(t, err, "ferry's identity runs another image as ferry-transfer")
	assert.Contains(t, err.Error(), "runs ferry's transfer image only")
	_, err = ferry.CoreV1().Pods(app).Create(ctx, transferPod(s.TransferImage(), "sh", "-c", "cat /etc/shadow"), dryRun)
	require.Error(t, err, "ferry's identity runs a shell as ferry-transfer")
	assert.Contains(t, err.Error(), "runs ferry-datamover send or serve")
	_, err = ferry.CoreV1().Pods(app).Create(ctx, transferPod(s.TransferImage(), "ferry-datamover", "send"), dryRun)
	assert.NoError(t, err, "ferry's own transfer pod is admitted")

	// docs/rbac.md: what kubectl shows for each identity, in an application's namespace and its own.
	var b strings.Builder
	b.WriteString("# What ferry's identities may do\n\n")
	b.WriteString("`kubectl auth can-i --list` for each identity ferry runs as, with `deploy/` applied as the README's Install\n")
	b.WriteString("section says (`deploy/source` and `deploy/openshift` on the source, `deploy/target` and `deploy/openshift` on\n")
	b.WriteString("the target). Written by `TestIdentities` (test/e2e/rbac_test.go), which fails when this file and the API\n")
	b.WriteString("server disagree; `FERRY_UPDATE_DOCS=1 make test-e2e E2E_FLAGS=\"-run TestIdentities\"` rewrites it. The same test\n")
	b.WriteString("checks each may and may-not of the README's identities table with SubjectAccessReviews.\n")
	for _, id := range identities {
		fmt.Fprintf(&b, "\n## %s\n\n`%s`\n", id.title, id.user())
		for _, scope := range []struct{ title, ns string }{{"In an application's namespace", app}, {"In its own namespace (`" + id.namespace + "`)", id.namespace}} {
			out, err := id.cluster(s).Kubectl(ctx, "auth", "can-i", "--list", "--as="+id.user(),
				"--as-group=system:serviceaccounts", "--as-group=system:serviceaccounts:"+id.namespace, "--as-group=system:authenticated", "-n", scope.ns)
			require.NoError(t, err)
			fmt.Fprintf(&b, "\n### %s\n\n```text\n%s```\n", scope.title, out)
		}
	}
	repo, err := filepath.Abs("../..")
	require.NoError(t, err)
	path := filepath.Join(repo, rbacDoc)
	if os.Getenv("FERRY_UPDATE_DOCS") == "1" {
		require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), b.String(), "%s is not what the API server says; rewrite it with FERRY_UPDATE_DOCS=1 and read the difference", rbacDoc)
}

// TestTenantCannotSteerTransfers tries what issue 11 found, as a tenant would, with a real token
// of a service account that has the built-in edit role in its own namespace only:
//   - a transfer request written by hand onto the tenant's PVC, aimed at another tenant's PVC on
//     the target (with a made-up signature and overwrite asked for);
//   - an image copy request on an image stream, aimed at another namespace's stream;
//
// and, as an admin with a properly signed request, a copy into a target PVC holding data ferry
// did not write. Each is refused (status Refused with the reason, a Warning Event), nothing is
// created on either cluster, and the victims' data is byte for byte as it was.
func TestTenantCannotSteerTransfers(t *testing.T) {
	// The base ferry-config: shared with the other parallel tests (see useSidecar).
	s := stacks.Parallel(t, stack.Options{OpenShift: true})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	src, dst := s.Source, s.Target
	useSidecar(t, ctx, s, nil)

	victim := s.Namespace(t, "victim")
	require.NoError(t, dst.CreateNamespace(ctx, victim, nil))
	create(t, ctx, dst, pvc(victim, "db"))
	writeVolume(t, ctx, dst, victim, "db", map[string]string{"orders.db": "the victim's orders"})

	ns := s.Namespace(t, "mallory")
	create(t, ctx, src, pvc(ns, "junk"))
	writeVolume(t, ctx, src, ns, "junk", map[string]string{"x": "junk"})
	mallory := tenant(t, ctx, src, ns, "mallory")

	// 1. A hand-written transfer request.
	forged := map[string]string{
		keys.TransferID: "steer-1", keys.TransferType: "stage", keys.TransferTarget: victim + "/db",
		keys.TransferOverwrite: "true", keys.TransferSignature: "v1.1700000000.AAAA",
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":%s}}`, prettyJSON(forged))
	_, err := mallory.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "junk", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
	require.NoError(t, err, "edit may annotate its own PVC")
	st := waitTransfer(t, ctx, src, ns, "junk", "steer-1", 2*time.Minute)
	assert.Equal(t, operation.PhaseRefused, st.Phase, st.Message)
	assert.Contains(t, st.Message, "signature")
	assert.Contains(t, eventReasons(t, ctx, src, ns, "PersistentVolumeClaim", "junk"), "TransferRefused")

	// 2. A hand-written image copy request. (The stack's image streams are CRDs, which the
	// built-in edit role does not cover as OpenShift's does: the admin client writes what the
	// tenant would; the refusal rests on the signature, not on who wrote it.)
	createImageStream(t, ctx, src, ns, "junk", map[string]any{}, nil)
	stream, err := src.Dynamic.Resource(imageStreamGVR).Namespace(ns).Get(ctx, "junk", metav1.GetOptions{})
	require.NoError(t, err)
	ann := stream.GetAnnotations()
	ann[keys.ImageCopyID], ann[keys.ImageCopyTarget], ann[keys.ImageCopyOverwrite] = "steer-2", "openshift/cli", "true"
	stream.SetAnnotations(ann)
	_, err = src.Dynamic.Resource(imageStreamGVR).Namespace(ns).Update(ctx, stream, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		u, err := src.Dynamic.Resource(imageStreamGVR).Namespace(ns).Get(ctx, "junk", metav1.GetOptions{})
		require.NoError(ct, err)
		ist, err := operation.ParseImageCopyStatus(u.GetAnnotations())
		require.NoError(ct, err)
		require.NotNil(ct, ist)
		assert.Equal(ct, "steer-2", ist.ID)
		assert.Equal(ct, operation.PhaseRefused, ist.Phase, ist.Message)
		assert.Contains(ct, ist.Message, "not signed")
	}, 2*time.Minute, time.Second)
	_, err = dst.Dynamic.Resource(imageStreamGVR).Namespace("openshift").Get(ctx, "cli", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "no image stream made in the namespace the tenant named: %v", err)

	// 3. An admin's signed request into a PVC with data ferry did not write: refused without
	// allow-overwrite.
	out, err := exec.CommandContext(ctx, filepath.Join(s.FerryBinDir, "ferry-datamover"), "request", "pvc", ns+"/junk", "--id", "into-victim",
		"--target", victim+"/db", "--kubeconfig", src.Kubeconfig, "--velero-namespace", src.VeleroNamespace).CombinedOutput()
	require.NoError(t, err, "%s", out)
	st = waitTransfer(t, ctx, src, ns, "junk", "into-victim", 3*time.Minute)
	assert.Equal(t, operation.PhaseRefused, st.Phase, st.Message)
	assert.Contains(t, st.Message, "allow-overwrite", "the refusal names the opt-in")

	// Nothing happened to the victims: no transfer objects left, the file as it was.
	got, err := os.ReadFile(filepath.Join(boundVolumeDir(t, ctx, dst, victim, "db"), "orders.db"))
	require.NoError(t, err)
	assert.Equal(t, "the victim's orders", string(got))
	db, err := dst.Kube.CoreV1().PersistentVolumeClaims(victim).Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	assert.NotContains(t, db.Annotations, keys.PairedWith, "the victim's PVC is not claimed by ferry")
	noTransferLeftovers(t, ctx, s, ns, victim)
}

// tenant makes service account name in ns with the built-in edit role there, and returns a
// client with a real token of it (TokenRequest, as `kubectl create token` makes).
func tenant(t *testing.T, ctx context.Context, c *stack.Cluster, ns, name string) kubernetes.Interface {
	t.Helper()
	create(t, ctx, c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-edit"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "edit"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name}},
		})
	kubeconfig, err := c.TokenKubeconfig(ctx, ns, name)
	require.NoError(t, err)
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	require.NoError(t, err)
	k, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return k
}

// impersonate is a client of the cluster acting as a service account of namespace ns.
func impersonate(t *testing.T, c *stack.Cluster, user, ns string) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	k, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return k
}
