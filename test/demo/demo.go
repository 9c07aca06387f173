// Package demo runs a whole migration on the local two-cluster stack, the way a user runs one on
// real clusters: the "file uploader" app (a Deployment serving files from a PVC, a Service, a
// Route, an ImageStream with a pushed image, a Secret with credentials) is staged twice while it
// keeps running, cut over with a final backup, and restored on the target, then the target is
// compared with the source. `make demo` runs it on a fresh stack; an e2e test runs the same code.
//
// The app is busybox httpd serving its volume (the stack's app image, pushed to the source's
// registry as the app's image); "uploading files" writes them into the PVC's volume folder, and
// the check at the end fetches them over HTTP from the app's pod on the target.
package demo

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/imagecopy/registrytest"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/treediff"
	"github.com/ferry-dev/ferry/internal/units"
	"github.com/ferry-dev/ferry/test/images"
	"github.com/ferry-dev/ferry/test/stack"
)

// App names.
const (
	appName = "file-uploader"
	pvcName = "uploads"
)

var (
	imageStreams = schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}
	routes       = schema.GroupVersionResource{Group: "route.openshift.io", Version: "v1", Resource: "routes"}
)

// Step is one thing the demo did.
type Step struct {
	Name   string
	Took   time.Duration
	Detail string
}

// Report is what the demo moved and found.
type Report struct {
	Namespace string
	Steps     []Step
	// Volume: files and bytes in the source volume at cut-over; bytes sent per backup.
	Files, Bytes int64
	BytesSent    map[string]int64
	FilesSent    map[string]int64
	// Images: copied per backup, blobs sent and skipped per backup.
	Images       int
	BlobsSent    map[string]int
	BlobsSkipped map[string]int
	// Uploaded is the bytes written into the volume by each round of uploads.
	Uploaded []int64
	// ObjectsRestored is what the restore created on the target.
	ObjectsRestored int
	// Checks lists each verification and whether it held.
	Checks []Check
}

// Check is one verification of the target against the source.
type Check struct {
	What string
	OK   bool
	Why  string
}

// OK reports whether every check held.
func (r *Report) OK() bool {
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Run migrates the file uploader from s.Source to s.Target, printing progress to out.
func Run(ctx context.Context, s *stack.Stack, out io.Writer) (*Report, error) {
	d := &runner{s: s, out: out, backups: map[string]string{}, r: &Report{
		Namespace: stack.UniqueName(appName),
		BytesSent: map[string]int64{}, FilesSent: map[string]int64{},
		BlobsSent: map[string]int{}, BlobsSkipped: map[string]int{},
	}}
	return d.r, d.run(ctx)
}

type runner struct {
	s       *stack.Stack
	out     io.Writer
	r       *Report
	srcDir  string
	image   string            // digest of the pushed image
	backups map[string]string // label (stage-1, stage-2, final) -> Velero backup name
}

func (d *runner) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

// step runs fn as a named step, timing it.
func (d *runner) step(name string, fn func() (string, error)) error {
	d.printf("\n==> %s\n", name)
	start := time.Now()
	detail, err := fn()
	took := time.Since(start).Round(100 * time.Millisecond)
	d.r.Steps = append(d.r.Steps, Step{Name: name, Took: took, Detail: detail})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	d.printf("    done in %s%s\n", took, prefixed(detail))
	return nil
}

func prefixed(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

func (d *runner) run(ctx context.Context) error {
	src, dst := d.s.Source, d.s.Target
	ns := d.r.Namespace
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"deploy the file uploader on the source cluster", func() (string, error) { return d.deploy(ctx) }},
		{"upload files", func() (string, error) { return d.upload(0, 40) }},
		{"set up ferry (ferry-config, target kubeconfig Secret, sidecar)", func() (string, error) { return d.setUpFerry(ctx) }},
		{"stage backup 1 (the app keeps running)", func() (string, error) { return d.backup(ctx, "stage-1", keys.MigrationStage) }},
		{"the app changes: more uploads, one file edited", func() (string, error) { return d.upload(40, 10) }},
		{"stage backup 2 (only the delta moves)", func() (string, error) { return d.backup(ctx, "stage-2", keys.MigrationStage) }},
		{"final backup (quiesce, last delta)", func() (string, error) { return d.backup(ctx, "final", keys.MigrationFinal) }},
		{"restore on the target cluster", func() (string, error) { return d.restore(ctx) }},
		{"verify the target against the source", func() (string, error) { return d.verify(ctx) }},
	}
	for _, s := range steps {
		if err := d.step(s.name, s.fn); err != nil {
			d.report()
			return err
		}
	}
	d.report()
	d.commands(src.Name, dst.Name, ns)
	return nil
}

// deploy creates the app on the source: image pushed to the internal registry and referenced
// by an ImageStream and the Deployment, a Secret, the PVC, a Service and a Route.
func (d *runner) deploy(ctx context.Context) (string, error) {
	src, ns := d.s.Source, d.r.Namespace
	if err := src.CreateNamespace(ctx, ns, nil); err != nil {
		return "", err
	}
	digest, err := src.PushImage(ctx, images.AppName, ns+"/"+appName+":1.0")
	if err != nil {
		return "", fmt.Errorf("pushing the app's image to the source registry: %w", err)
	}
	d.image = digest
	repo := src.RegistryHost + "/" + ns + "/" + appName
	is := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
		"metadata": map[string]any{"namespace": ns, "name": appName, "labels": map[string]any{"app": appName}},
		"spec":     map[string]any{"lookupPolicy": map[string]any{"local": true}},
	}}
	created, err := src.Dynamic.Resource(imageStreams).Namespace(ns).Create(ctx, is, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	// OpenShift's API server fills the status when an image is pushed; the stack's CRD needs it
	// written.
	created.Object["status"] = map[string]any{"dockerImageRepository": repo, "tags": []any{map[string]any{
		"tag": "1.0", "items": []any{map[string]any{"dockerImageReference": repo + "@" + digest, "image": digest,
			"created": time.Now().UTC().Format(time.RFC3339), "generation": int64(1)}},
	}}}
	if _, err := src.Dynamic.Resource(imageStreams).Namespace(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	labels := map[string]string{"app": appName}
	objs := []crclient.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "uploader-credentials"},
			StringData: map[string]string{"username": "uploader", "password": "ferry-demo-s3cret"}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pvcName},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: appName, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name: "uploader", Image: repo + "@" + digest,
						Command:      images.Serve("/srv", 8080, ""),
						Ports:        []corev1.ContainerPort{{ContainerPort: 8080}},
						EnvFrom:      []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "uploader-credentials"}}}},
						VolumeMounts: []corev1.VolumeMount{{Name: "uploads", MountPath: "/srv/uploads"}},
					}},
					Volumes: []corev1.Volume{{Name: "uploads", VolumeSource: corev1.VolumeSource{
						PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvcName}}}},
				}},
			}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: appName},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}}},
	}
	for _, o := range objs {
		if err := src.Client.Create(ctx, o); err != nil {
			return "", err
		}
	}
	route := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "route.openshift.io/v1", "kind": "Route",
		"metadata": map[string]any{"namespace": ns, "name": appName, "annotations": map[string]any{keys.RouteHostGenerated: "true"}},
		"spec": map[string]any{"host": appName + "-" + ns + ".apps.source.example.com",
			"to": map[string]any{"kind": "Service", "name": appName}},
	}}
	if _, err := src.Dynamic.Resource(routes).Namespace(ns).Create(ctx, route, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	dir, err := d.volumeDir(ctx, src, ns)
	if err != nil {
		return "", err
	}
	d.srcDir = dir
	return fmt.Sprintf("namespace %s: Deployment, Service, Route, ImageStream (image %s…), Secret, PVC %s", ns, digest[:19], pvcName), nil
}

// upload writes count files starting at n into the volume, and edits file 0 when n > 0.
func (d *runner) upload(n, count int) (string, error) {
	var total int64
	for i := n; i < n+count; i++ {
		size := 64<<10 + i*(16<<10)
		if i%10 == 3 {
			size = 4 << 20 // a few bigger uploads
		}
		b := make([]byte, size)
		_, _ = rand.Read(b)
		p := filepath.Join(d.srcDir, fmt.Sprintf("%s/upload-%03d.bin", time.Date(2026, time.Month(1+i%12), 1, 0, 0, 0, 0, time.UTC).Format("2006-01"), i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return "", err
		}
		total += int64(size)
	}
	d.r.Uploaded = append(d.r.Uploaded, total)
	msg := fmt.Sprintf("%d files, %s", count, units.Bytes(total))
	if n > 0 {
		index := filepath.Join(d.srcDir, "index.txt")
		if err := os.WriteFile(index, []byte(fmt.Sprintf("%d uploads, last edit %s\n", n+count, time.Now().Format(time.RFC3339))), 0o644); err != nil {
			return "", err
		}
		msg += ", index.txt edited"
	} else if err := os.WriteFile(filepath.Join(d.srcDir, "index.txt"), []byte("first uploads\n"), 0o644); err != nil {
		return "", err
	}
	return msg, nil
}

// FerryConfig is the demo's ferry-config (the e2e tests' base configuration too).
var FerryConfig = map[string]string{
	"endpointType":        "LoadBalancer", // the stack's LoadBalancer stand-in gives them addresses
	"storageClassMapping": "standard=fast",
	"registryInsecure":    "true", // the stack's registries speak plain HTTP
	"prepareTimeout":      "3m",
	"quiesceTimeout":      "3m",
}

func (d *runner) setUpFerry(ctx context.Context) (string, error) {
	if err := d.s.ConfigureFerry(ctx, FerryConfig); err != nil {
		return "", err
	}
	// The target publishes where its registry is reachable from outside, as OpenShift 4 does.
	dst := d.s.Target
	ic, err := dst.Dynamic.Resource(stack.ImagesConfigGVR).Get(ctx, "cluster", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if err := unstructured.SetNestedStringSlice(ic.Object, []string{dst.RegistryHost}, "status", "externalRegistryHostnames"); err != nil {
		return "", err
	}
	if _, err := dst.Dynamic.Resource(stack.ImagesConfigGVR).UpdateStatus(ctx, ic, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	if _, err := d.s.EnsureSidecar(ctx); err != nil {
		return "", err
	}
	return "storageClassMapping standard=fast, endpointType LoadBalancer", nil
}

// backup runs `velero backup create` with the migration label and shows the per-PVC and
// per-image-stream progress the sidecar reports while Velero waits for its operations.
func (d *runner) backup(ctx context.Context, label, kind string) (string, error) {
	src, ns := d.s.Source, d.r.Namespace
	name := stack.UniqueName(label)
	if _, err := src.Velero(ctx, "backup", "create", name, "--include-namespaces", ns, "--snapshot-volumes=false",
		"--labels", keys.Migration+"="+kind); err != nil {
		return "", err
	}
	done := make(chan struct{})
	go d.showProgress(ctx, done)
	b, err := src.WaitBackup(ctx, name)
	close(done)
	if err != nil {
		return "", err
	}
	st, err := d.pvcStatus(ctx)
	if err != nil {
		return "", err
	}
	is, err := d.imageStatus(ctx)
	if err != nil {
		return "", err
	}
	if st.ID != string(b.UID) || st.Phase != operation.PhaseCompleted {
		return "", fmt.Errorf("PVC %s: transfer %s is %s: %s", pvcName, st.ID, st.Phase, st.Message)
	}
	d.r.BytesSent[label], d.r.FilesSent[label] = st.BytesSent, st.FilesSent
	d.r.Files, d.r.Bytes = st.Files, st.BytesTotal
	d.r.BlobsSent[label], d.r.BlobsSkipped[label], d.r.Images = is.BlobsSent, is.BlobsSkipped, is.Images
	d.backups[label] = name
	detail := fmt.Sprintf("backup %s %s; volume: %d of %d files sent, %s on the wire; images: %d blobs sent, %d skipped",
		name, b.Status.Phase, st.FilesSent, st.Files, units.Bytes(st.BytesSent), is.BlobsSent, is.BlobsSkipped)
	if kind == keys.MigrationFinal {
		detail += "; quiesced " + strings.Join(st.Quiesced, ", ")
	}
	return detail, nil
}

// showProgress prints the transfer status the PVC action reports to Velero (its Progress()),
// whenever it changes, until done closes.
func (d *runner) showProgress(ctx context.Context, done <-chan struct{}) {
	last := ""
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		st, err := d.pvcStatus(ctx)
		if err != nil || st == nil {
			continue
		}
		line := fmt.Sprintf("    %s/%s: %s", d.r.Namespace, pvcName, st.Phase)
		if st.BytesTotal > 0 {
			line += fmt.Sprintf(" %3.0f%% %s of %s", st.Percent, units.Bytes(st.BytesDone), units.Bytes(st.BytesTotal))
		}
		if st.RateBPS > 0 && st.Phase == operation.PhaseTransferring {
			line += fmt.Sprintf(" at %s/s", units.Bytes(st.RateBPS))
		}
		if st.Message != "" {
			line += " — " + st.Message
		}
		if line != last {
			d.printf("%s\n", line)
			last = line
		}
	}
}

func (d *runner) pvcStatus(ctx context.Context) (*operation.TransferStatus, error) {
	p, err := d.s.Source.Kube.CoreV1().PersistentVolumeClaims(d.r.Namespace).Get(ctx, pvcName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	st, err := operation.ParseTransferStatus(p.Annotations)
	if err == nil && st == nil {
		return &operation.TransferStatus{}, nil
	}
	return st, err
}

func (d *runner) imageStatus(ctx context.Context) (*operation.ImageCopyStatus, error) {
	u, err := d.s.Source.Dynamic.Resource(imageStreams).Namespace(d.r.Namespace).Get(ctx, appName, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	st, err := operation.ParseImageCopyStatus(u.GetAnnotations())
	if err == nil && st == nil {
		return nil, fmt.Errorf("image stream %s has no copy status", appName)
	}
	return st, err
}

func (d *runner) restore(ctx context.Context) (string, error) {
	dst := d.s.Target
	final := d.backups["final"]
	d.printf("    waiting for backup %s to reach the target's Velero through the shared bucket (Velero syncs once a minute)\n", final)
	if _, err := dst.WaitBackupSynced(ctx, final); err != nil {
		return "", err
	}
	name := stack.UniqueName("restore")
	r, err := dst.CreateRestore(ctx, name, "--from-backup", final)
	if err != nil {
		return "", err
	}
	if r.Status.Progress != nil {
		d.r.ObjectsRestored = r.Status.Progress.ItemsRestored
	}
	return fmt.Sprintf("restore %s %s: %d items restored, %d warnings (objects that already existed, such as the PVC the transfers filled; `velero restore describe %s` lists them)",
		name, r.Status.Phase, d.r.ObjectsRestored, r.Status.Warnings, name), nil
}

// verify compares the target with the source as a user would.
func (d *runner) verify(ctx context.Context) (string, error) {
	src, dst, ns := d.s.Source, d.s.Target, d.r.Namespace
	check := func(what string, err error) {
		c := Check{What: what, OK: err == nil}
		if err != nil {
			c.Why = err.Error()
		}
		d.r.Checks = append(d.r.Checks, c)
	}
	dstDir, err := d.volumeDir(ctx, dst, ns)
	if err == nil {
		err = treediff.Equal(d.srcDir, dstDir, treediff.All())
	}
	check("the target volume equals the source byte for byte (and by owner, mode, mtime, links)", err)

	got, err := registrytest.At(dst.RegistryFromHost).Digest(ns + "/" + appName + ":1.0")
	if err == nil && got != d.image {
		err = fmt.Errorf("target digest %s, source %s", got, d.image)
	}
	check("the image resolves in the target registry by the same digest", err)

	dep, err := dst.Kube.AppsV1().Deployments(ns).Get(ctx, appName, metav1.GetOptions{})
	if err == nil && (dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2) {
		err = fmt.Errorf("replicas %v", dep.Spec.Replicas)
	}
	if err == nil && dep.Spec.Template.Spec.Containers[0].Image != dst.RegistryHost+"/"+ns+"/"+appName+"@"+d.image {
		err = fmt.Errorf("image %s", dep.Spec.Template.Spec.Containers[0].Image)
	}
	check("the Deployment is back with 2 replicas, pulling from the target registry", err)

	check("the target's app pods run and serve the uploads over HTTP, the source's bytes", d.serving(ctx, dst, ns))

	srcDep, err := src.Kube.AppsV1().Deployments(ns).Get(ctx, appName, metav1.GetOptions{})
	if err == nil && (srcDep.Spec.Replicas == nil || *srcDep.Spec.Replicas != 0) {
		err = fmt.Errorf("source replicas %v", srcDep.Spec.Replicas)
	}
	check("the source app stays quiesced (ferry-datamover rollback would bring it back)", err)

	route, err := dst.Dynamic.Resource(routes).Namespace(ns).Get(ctx, appName, metav1.GetOptions{})
	if err == nil {
		if host, found, _ := unstructured.NestedString(route.Object, "spec", "host"); found {
			err = fmt.Errorf("the source's generated host %q came along", host)
		}
	}
	check("the Route's generated host is left to the target's router", err)

	want, err := src.Kube.CoreV1().Secrets(ns).Get(ctx, "uploader-credentials", metav1.GetOptions{})
	if err == nil {
		var have *corev1.Secret
		if have, err = dst.Kube.CoreV1().Secrets(ns).Get(ctx, "uploader-credentials", metav1.GetOptions{}); err == nil && string(have.Data["password"]) != string(want.Data["password"]) {
			err = fmt.Errorf("credentials differ")
		}
	}
	check("the credentials Secret is equal", err)

	failed := 0
	for _, c := range d.r.Checks {
		if !c.OK {
			failed++
		}
	}
	if failed > 0 {
		return "", fmt.Errorf("%d of %d checks failed", failed, len(d.r.Checks))
	}
	return fmt.Sprintf("%d checks passed", len(d.r.Checks)), nil
}

// serving waits (up to 3 minutes) until the app's 2 pods on c run and each serves index.txt and
// the first upload with the bytes of the source's volume, fetched over HTTP inside the pod.
func (d *runner) serving(ctx context.Context, c *stack.Cluster, ns string) error {
	files := []string{"index.txt"}
	if uploads, _ := filepath.Glob(filepath.Join(d.srcDir, "*", "upload-000.bin")); len(uploads) == 1 {
		rel, _ := filepath.Rel(d.srcDir, uploads[0])
		files = append(files, rel)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		err := d.serves(ctx, c, ns, files)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(2 * time.Second)
	}
}

func (d *runner) serves(ctx context.Context, c *stack.Cluster, ns string, files []string) error {
	pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + appName})
	if err != nil {
		return err
	}
	var running []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p.Name)
		}
	}
	if len(running) != 2 {
		return fmt.Errorf("%d running pods of %s, want 2", len(running), appName)
	}
	for _, pod := range running {
		for _, f := range files {
			want, err := os.ReadFile(filepath.Join(d.srcDir, f))
			if err != nil {
				return err
			}
			got, err := c.Kubectl(ctx, "-n", ns, "exec", pod, "--", "wget", "-q", "-O-", "http://127.0.0.1:8080/uploads/"+f)
			if err != nil {
				return fmt.Errorf("pod %s: GET /uploads/%s: %w", pod, f, err)
			}
			if got != string(want) {
				return fmt.Errorf("pod %s serves /uploads/%s with %d bytes that differ from the source's %d", pod, f, len(got), len(want))
			}
		}
	}
	return nil
}

func (d *runner) volumeDir(ctx context.Context, c *stack.Cluster, ns string) (string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, err := c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(ctx, pvcName, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.ClaimBound {
			pv, err := c.Kube.CoreV1().PersistentVolumes().Get(ctx, p.Spec.VolumeName, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			if pv.Spec.HostPath == nil {
				return "", fmt.Errorf("PV %s is not a host-path volume", pv.Name)
			}
			return pv.Spec.HostPath.Path, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("PVC %s/%s on the %s cluster is not bound: %v", ns, pvcName, c.Name, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// report prints what moved, how long each step took and what was verified.
func (d *runner) report() {
	r := d.r
	d.printf("\n==> report\n")
	w := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "    step\ttook\n")
	for _, s := range r.Steps {
		fmt.Fprintf(w, "    %s\t%s\n", s.Name, s.Took)
	}
	w.Flush()
	d.printf("\n    volume %s/%s: %d files, %s\n", r.Namespace, pvcName, r.Files, units.Bytes(r.Bytes))
	for _, b := range []string{"stage-1", "stage-2", "final"} {
		if _, ok := r.BytesSent[b]; ok {
			d.printf("      %-8s %4d files sent, %10s on the wire; images: %d blobs sent, %d skipped\n", b, r.FilesSent[b], units.Bytes(r.BytesSent[b]), r.BlobsSent[b], r.BlobsSkipped[b])
		}
	}
	d.printf("    images copied: %d; objects restored on the target: %d\n\n", r.Images, r.ObjectsRestored)
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		d.printf("    [%s] %s%s\n", mark, c.What, prefixed(c.Why))
	}
	if r.OK() {
		d.printf("\n    The target equals the source.\n")
	}
}

// commands prints what a user runs on real clusters for the same migration.
func (d *runner) commands(src, dst, ns string) {
	d.printf(`
==> the same migration on real clusters
    # once: install ferry (README "Install on real clusters"), then
    velero backup create stage-1 --include-namespaces %[1]s --labels ferry.dev/migration=stage --snapshot-volumes=false
    velero backup describe stage-1 --details         # per-PVC progress under "Operations"
    velero backup create stage-2 --include-namespaces %[1]s --labels ferry.dev/migration=stage --snapshot-volumes=false
    velero backup create final   --include-namespaces %[1]s --labels ferry.dev/migration=final --snapshot-volumes=false
    velero --kubecontext %[3]s restore create --from-backup final
    # (this demo ran them with the velero CLI against the local %[2]s and %[3]s clusters)
`, ns, src, dst)
}
