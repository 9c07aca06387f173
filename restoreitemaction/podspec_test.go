package restoreitemaction

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmware-tanzu/velero/pkg/builder"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func stamped(extra ...string) map[string]string {
	m := map[string]string{keys.SourceRegistry: srcRegistry, keys.SourceServerVersion: "1.11"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i]] = extra[i+1]
	}
	return m
}

func TestPodSpecActionImages(t *testing.T) {
	spec := corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: srcRegistry + "/app/tools:1.0"}},
		Containers: []corev1.Container{
			{Name: "web", Image: srcRegistry + "/app/web@sha256:0123456789abcdef"},
			{Name: "shared", Image: srcRegistry + "/shared/base:2"},
			{Name: "nginx", Image: "docker.io/library/nginx:1.27"},
			{Name: "lookalike", Image: srcRegistry + "-mirror/app/web:1"},
		},
	}
	tests := []struct {
		name    string
		target  *testutil.Cluster
		ann     map[string]string
		restore []string
		want    []string // images in order: init, web, shared, nginx, lookalike
	}{
		{
			name:    "OpenShift to OpenShift with a namespace mapping",
			target:  targetOpenShift(),
			ann:     stamped(),
			restore: []string{"app", "app2"},
			want: []string{
				tgtRegistry + "/app2/tools:1.0", tgtRegistry + "/app2/web@sha256:0123456789abcdef",
				tgtRegistry + "/shared/base:2", "docker.io/library/nginx:1.27", srcRegistry + "-mirror/app/web:1",
			},
		},
		{
			name:   "target without an internal registry (plain Kubernetes): left as is",
			target: testutil.NewCluster(),
			ann:    stamped(),
			want:   []string{srcRegistry + "/app/tools:1.0", srcRegistry + "/app/web@sha256:0123456789abcdef", srcRegistry + "/shared/base:2", "docker.io/library/nginx:1.27", srcRegistry + "-mirror/app/web:1"},
		},
		{
			name:   "source had no internal registry: nothing to rewrite",
			target: targetOpenShift(),
			ann:    nil,
			want:   []string{srcRegistry + "/app/tools:1.0", srcRegistry + "/app/web@sha256:0123456789abcdef", srcRegistry + "/shared/base:2", "docker.io/library/nginx:1.27", srcRegistry + "-mirror/app/web:1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := testutil.NewLogger()
			a := NewPodSpecAction(log, tc.target.Clients, configOf(t, nil))
			o, err := a.Execute(input(t, deployment("app", "web", tc.ann, spec), restoreWith(tc.restore...)))
			require.NoError(t, err)
			var d appsv1.Deployment
			testutil.FromUnstructured(t, out(t, o), &d)
			got := []string{d.Spec.Template.Spec.InitContainers[0].Image}
			for _, c := range d.Spec.Template.Spec.Containers {
				got = append(got, c.Image)
			}
			assert.Equal(t, tc.want, got)
			assert.NotContains(t, d.Annotations, keys.SourceRegistry, "ferry's stamps are not left on restored objects")
			if tc.want[0] != spec.InitContainers[0].Image {
				assert.Contains(t, logs.String(), "app/web", "the log names the object")
			}
		})
	}
}

func TestPodSpecActionCronJobAndInternalRegistryOverride(t *testing.T) {
	cj := &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "nightly", Annotations: stamped()},
		Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "c", Image: srcRegistry + "/app/job:1"}},
		}}}}},
	}
	// A plain Kubernetes target names its registry in ferry-config.
	log, _ := testutil.NewLogger()
	a := NewPodSpecAction(log, testutil.NewCluster().Clients, configOf(t, map[string]string{"internalRegistry": "registry.local:5000"}))
	o, err := a.Execute(input(t, cj, restoreWith()))
	require.NoError(t, err)
	var got batchv1.CronJob
	testutil.FromUnstructured(t, out(t, o), &got)
	assert.Equal(t, "registry.local:5000/app/job:1", got.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Image)
}

func TestPodSpecActionPullSecrets(t *testing.T) {
	withSecrets := func(names ...string) corev1.PodSpec {
		s := corev1.PodSpec{ServiceAccountName: "runner", Containers: []corev1.Container{{Name: "c", Image: "x"}}}
		for _, n := range names {
			s.ImagePullSecrets = append(s.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
		}
		return s
	}
	targetSA := func(ann map[string]string, pull ...string) *corev1.ServiceAccount {
		sa := builder.ForServiceAccount("app2", "runner").ObjectMeta(builder.WithAnnotationsMap(ann)).Result()
		for _, p := range pull {
			sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: p})
		}
		return sa
	}
	tests := []struct {
		name   string
		target *testutil.Cluster
		spec   corev1.PodSpec
		want   []string
	}{
		{
			name:   "generated secret swapped for the target service account's; custom secret kept",
			target: targetOpenShift(targetSA(nil, "runner-dockercfg-k9x2q")),
			spec:   withSecrets("runner-dockercfg-abcde", "my-registry-creds"),
			want:   []string{"runner-dockercfg-k9x2q", "my-registry-creds"},
		},
		{
			name:   "OpenShift 4.16+: the service account names its pull secret in an annotation",
			target: targetOpenShift(targetSA(map[string]string{keys.InternalRegistryPullSecretRef: "runner-dockercfg-zz9zz"})),
			spec:   withSecrets("runner-dockercfg-abcde"),
			want:   []string{"runner-dockercfg-zz9zz"},
		},
		{
			name:   "no generated secret on the target and nothing else left: dropped without waiting",
			target: targetOpenShift(),
			spec:   withSecrets("runner-dockercfg-abcde"),
			want:   nil,
		},
		{
			name:   "plain Kubernetes: a lookalike custom secret is never waited for",
			target: testutil.NewCluster(),
			spec:   withSecrets("runner-dockercfg-abcde", "other"),
			want:   []string{"other"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			a := NewPodSpecAction(log, tc.target.Clients, configOf(t, nil))
			a.secrets.wait = time.Minute // a wait would show as a timeout of the test
			start := time.Now()
			o, err := a.Execute(input(t, deployment("app", "web", nil, tc.spec), restoreWith("app", "app2")))
			require.NoError(t, err)
			assert.Less(t, time.Since(start), 10*time.Second, "must not wait")
			var d appsv1.Deployment
			testutil.FromUnstructured(t, out(t, o), &d)
			var got []string
			for _, r := range d.Spec.Template.Spec.ImagePullSecrets {
				got = append(got, r.Name)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestPodSpecActionWaitsForTheGeneratedSecret(t *testing.T) {
	target := targetOpenShift(builder.ForServiceAccount("app", "runner").Result())
	log, _ := testutil.NewLogger()
	a := NewPodSpecAction(log, target.Clients, configOf(t, nil))
	a.secrets.wait, a.secrets.poll = 20*time.Second, 10*time.Millisecond
	go func() {
		// the target's controller generates the secret a moment later
		time.Sleep(100 * time.Millisecond)
		sa := builder.ForServiceAccount("app", "runner").Result()
		sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "runner-dockercfg-late1"}}
		_, _ = target.Kube.CoreV1().ServiceAccounts("app").Update(context.Background(), sa, metav1.UpdateOptions{})
	}()
	spec := corev1.PodSpec{ServiceAccountName: "runner", Containers: []corev1.Container{{Name: "c", Image: "x"}},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "runner-dockercfg-abcde"}, {Name: "custom"}}}
	o, err := a.Execute(input(t, deployment("app", "web", nil, spec), restoreWith()))
	require.NoError(t, err)
	var d appsv1.Deployment
	testutil.FromUnstructured(t, out(t, o), &d)
	assert.Equal(t, []corev1.LocalObjectReference{{Name: "runner-dockercfg-late1"}, {Name: "custom"}}, d.Spec.Template.Spec.ImagePullSecrets)
}

func TestPodSpecActionNodePinning(t *testing.T) {
	spec := corev1.PodSpec{
		NodeName:     "node-a",
		NodeSelector: map[string]string{keys.HostnameLabel: "node-a", "topology.kubernetes.io/zone": "z1"},
		Containers:   []corev1.Container{{Name: "c", Image: "x"}},
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: keys.HostnameLabel, Operator: "In", Values: []string{"node-a"}}}},
				{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: "In", Values: []string{"ssd"}}}},
			}},
		}},
	}
	log, _ := testutil.NewLogger()
	a := NewPodSpecAction(log, testutil.NewCluster().Clients, configOf(t, nil))

	o, err := a.Execute(input(t, deployment("app", "web", nil, spec), restoreWith()))
	require.NoError(t, err)
	var d appsv1.Deployment
	testutil.FromUnstructured(t, out(t, o), &d)
	got := d.Spec.Template.Spec
	assert.Empty(t, got.NodeName)
	assert.Equal(t, map[string]string{"topology.kubernetes.io/zone": "z1"}, got.NodeSelector, "only the hostname pin goes")
	require.NotNil(t, got.Affinity)
	terms := got.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	require.Len(t, terms, 1)
	assert.Equal(t, "disk", terms[0].MatchExpressions[0].Key)

	// A Pod keeps nodeName for Velero's own pod action to clear; the hostname selector goes.
	pod := builder.ForPod("app", "p").NodeName("node-a").Containers(&corev1.Container{Name: "c", Image: "x"}).Result()
	pod.Spec.NodeSelector = map[string]string{keys.HostnameLabel: "node-a"}
	o, err = a.Execute(input(t, pod, restoreWith()))
	require.NoError(t, err)
	var p corev1.Pod
	testutil.FromUnstructured(t, out(t, o), &p)
	assert.Equal(t, "node-a", p.Spec.NodeName)
	assert.Empty(t, p.Spec.NodeSelector)
}

func TestPodSpecActionDeploymentConfig(t *testing.T) {
	dc := testutil.Object("apps.openshift.io/v1", "DeploymentConfig", "app", "web", map[string]any{
		"metadata.annotations":          map[string]any{keys.SourceRegistry: srcRegistry},
		"spec.template.spec.containers": []any{map[string]any{"name": "web", "image": srcRegistry + "/app/web@sha256:aa"}},
		"spec.triggers": []any{
			map[string]any{"type": "ConfigChange"},
			map[string]any{"type": "ImageChange", "imageChangeParams": map[string]any{
				"automatic": true, "containerNames": []any{"web"},
				"from":               map[string]any{"kind": "ImageStreamTag", "namespace": "app", "name": "web:latest"},
				"lastTriggeredImage": srcRegistry + "/app/web@sha256:aa",
			}},
		},
		"spec.unknownFutureField": "kept",
	})
	log, _ := testutil.NewLogger()
	a := NewPodSpecAction(log, targetOpenShift().Clients, configOf(t, nil))
	o, err := a.Execute(inputU(dc, restoreWith("app", "app2")))
	require.NoError(t, err)
	u := out(t, o)
	img, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	assert.Equal(t, tgtRegistry+"/app2/web@sha256:aa", img[0].(map[string]any)["image"])
	triggers, _, _ := unstructured.NestedSlice(u.Object, "spec", "triggers")
	params := triggers[1].(map[string]any)["imageChangeParams"].(map[string]any)
	assert.Equal(t, "app2", params["from"].(map[string]any)["namespace"])
	assert.Equal(t, tgtRegistry+"/app2/web@sha256:aa", params["lastTriggeredImage"])
	v, _, _ := unstructured.NestedString(u.Object, "spec", "unknownFutureField")
	assert.Equal(t, "kept", v, "fields ferry does not know survive")
}

func TestPodSpecActionImageTriggerAnnotation(t *testing.T) {
	ann := map[string]string{keys.ImageTriggers: `[{"from":{"kind":"ImageStreamTag","name":"web:latest","namespace":"app"},"fieldPath":"spec.template.spec.containers[?(@.name==\"web\")].image"}]`}
	log, _ := testutil.NewLogger()
	a := NewPodSpecAction(log, testutil.NewCluster().Clients, configOf(t, nil))
	o, err := a.Execute(input(t, deployment("app", "web", ann, corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "x"}}}), restoreWith("app", "app2")))
	require.NoError(t, err)
	assert.Contains(t, out(t, o).GetAnnotations()[keys.ImageTriggers], `"namespace":"app2"`)

	bad := map[string]string{keys.ImageTriggers: `{not a list`}
	_, err = a.Execute(input(t, deployment("app", "web", bad, corev1.PodSpec{}), restoreWith("app", "app2")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Deployment app/web")
	assert.Contains(t, err.Error(), keys.ImageTriggers)
}

func TestPodSpecActionLeavesImagesAnEarlierActionRewrote(t *testing.T) {
	// Both clusters' registry host is the same: openshift-velero-plugin ran first and mapped
	// app→app2; with the mapping {app: app2, app2: app} ferry must not map the result back.
	spec := func(web string) corev1.PodSpec {
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: web}, {Name: "side", Image: srcRegistry + "/app/side:1"}}}
	}
	ann := stamped(keys.OVPBackupRegistryHostname, srcRegistry)
	backedUp := testutil.Unstructured(t, deployment("app", "web", ann, spec(srcRegistry+"/app/web:1")))
	item := testutil.Unstructured(t, deployment("app", "web", ann, spec(srcRegistry+"/app2/web:1")))
	target := testutil.NewCluster()
	log, logs := testutil.NewLogger()
	a := NewPodSpecAction(log, target.Clients, configOf(t, map[string]string{"internalRegistry": srcRegistry}))
	o, err := a.Execute(&velero.RestoreItemActionExecuteInput{Item: item, ItemFromBackup: backedUp, Restore: restoreWith("app", "app2", "app2", "app")})
	require.NoError(t, err)
	var d appsv1.Deployment
	testutil.FromUnstructured(t, out(t, o), &d)
	assert.Equal(t, srcRegistry+"/app2/web:1", d.Spec.Template.Spec.Containers[0].Image, "left as the earlier action wrote it")
	assert.Equal(t, srcRegistry+"/app2/side:1", d.Spec.Template.Spec.Containers[1].Image, "what is still as backed up is ferry's")
	assert.Contains(t, logs.String(), "left as it is")
	assert.Contains(t, logs.String(), "namespace=app")
	assert.NotContains(t, d.Annotations, keys.OVPBackupRegistryHostname, "OVP's image swap is switched off where ferry rewrites")
}
