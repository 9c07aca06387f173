package stack

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/ferry-dev/ferry/test/images"
)

const (
	// VeleroImage is the image of the `velero` Deployment. The Deployment never runs here (its
	// replicas are 0), but Velero's pod-volume restore action reads its image, and restores fail
	// without it.
	VeleroImage = "velero/velero:v1.18.3"
	// BackupStorageLocation is the name of the default BSL of both clusters.
	BackupStorageLocation = "default"

	credentialsSecret = "cloud-credentials"
	// backupSyncPeriod is how soon a backup made on the source shows up on the target, where it
	// is restored. Each sync (and each validation of the location) starts the object store
	// plugin as a process of its own: the source, which restores nothing, syncs and every
	// Velero validates at Velero's own pace (1 min), which took a core's share of a loaded
	// machine with ten stacks up.
	backupSyncPeriod = 5 * time.Second
)

// backupSyncPeriod is the BSL's: backupSyncPeriod on the target, Velero's default (nil) on the
// source.
func (c *Cluster) backupSyncPeriod() *metav1.Duration {
	if c.index == 0 {
		return nil
	}
	return &metav1.Duration{Duration: backupSyncPeriod}
}

// veleroServerArgs are the flags of every `velero server` of the stack; Velero hands them on to
// its plugin processes.
func (c *Cluster) veleroServerArgs() []string {
	return append([]string{
		"server",
		"--kubeconfig=" + c.Kubeconfig,
		"--namespace=" + c.VeleroNamespace,
		"--plugin-dir=" + c.PluginDir,
		// Inside Velero's own network namespace these cannot collide with anything.
		"--metrics-address=127.0.0.1:8085",
		"--profiler-address=127.0.0.1:6060",
		// Each poll of a backup's operations starts ferry's plugin process anew (Velero's default
		// is 10 s); 5 s finds a finished transfer soon enough without a process start per
		// backup every other second.
		"--item-operation-sync-frequency=5s",
		// A PVC that never binds fails the restore within minutes, not after the default 10.
		"--resource-timeout=3m",
		// Tests create many objects quickly; the defaults (20/30) make Velero the bottleneck.
		"--client-qps=200", "--client-burst=400",
		"--log-format=text",
	}, c.stack.opts.VeleroArgs...)
}

// createVeleroObjects creates what `velero install` would, minus the pod: the namespace, the
// `velero` Deployment (never running), the S3 credentials and the shared BSL. (Ferry's own
// objects come with ConfigureFerry.) As with `velero install`, the BSL names no credential: the
// AWS plugin reads the file AWS_SHARED_CREDENTIALS_FILE names (see startVelero). A BSL that names
// a Secret has Velero rewrite a file from it for every use, and a plugin reading it meanwhile
// found it empty on loaded runs ("no EC2 IMDS role found"; the BSL then turned Unavailable).
func (c *Cluster) createVeleroObjects(ctx context.Context) error {
	s := c.stack
	ns := c.VeleroNamespace
	objs := []crclient.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "velero"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](0),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"deploy": "velero"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"deploy": "velero"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{
						Name: "velero", Image: VeleroImage, Command: []string{"/velero"}, Args: []string{"server"},
					}}},
				},
			},
		},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: credentialsSecret},
			Data:       map[string][]byte{"cloud": s.veleroCredentials()},
		},
		&velerov1.BackupStorageLocation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: BackupStorageLocation},
			Spec: velerov1.BackupStorageLocationSpec{
				Provider: "aws",
				Default:  true,
				StorageType: velerov1.StorageType{ObjectStorage: &velerov1.ObjectStorageLocation{
					Bucket: s.S3.Bucket,
				}},
				Config: map[string]string{
					"region":           s.S3.Region,
					"s3ForcePathStyle": "true",
					"s3Url":            s.S3.Endpoint,
				},
				BackupSyncPeriod: c.backupSyncPeriod(),
			},
		},
	}
	for _, o := range objs {
		if err := c.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s/%s: %w", o, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// startVelero fills the plugin folder (ferry's plugins from their image, see
// addPluginFromImage), opens Velero's network namespace with its relay, starts
// `velero server` inside and waits until it has validated the BSL (which needs the AWS plugin
// and S3).
func (c *Cluster) startVelero(ctx context.Context, plugins []string) error {
	s := c.stack
	ferry := filepath.Join(s.FerryBinDir, FerryPluginsBin)
	var hostPlugins []string
	for _, p := range plugins {
		if p != ferry {
			hostPlugins = append(hostPlugins, p)
		}
	}
	if err := c.fillPluginDir(hostPlugins); err != nil {
		return err
	}
	if len(hostPlugins) < len(plugins) {
		if err := c.addPluginFromImage(ctx, images.PluginsName); err != nil {
			return fmt.Errorf("adding ferry's plugins from their image: %w", err)
		}
	}
	if c.relay == nil {
		if err := addNetNS(c.NetNS); err != nil {
			return err
		}
		r, err := startRelay(c.NetNS, c.RelayedAddresses())
		if err != nil {
			return err
		}
		c.relay = r
	}
	tmp := filepath.Join(c.Dir, "velero", "tmp")
	creds := filepath.Join(c.Dir, "velero", "cloud-credentials")
	if err := os.WriteFile(creds, s.veleroCredentials(), 0o600); err != nil {
		return err
	}
	p, err := s.StartProcess(ProcessSpec{
		Name: "velero-" + c.Name,
		Path: s.tools.velero,
		Args: c.veleroServerArgs(),
		// Velero stages BSL credentials under $TMPDIR/credentials: keep the two servers apart.
		// KUBECONFIG stands in for the in-cluster config plugins fall back to: Velero 1.18
		// hands them its own flags, --kubeconfig too, but 1.14 only --log-level and --features.
		Env: []string{"TMPDIR=" + tmp, "VELERO_NAMESPACE=" + c.VeleroNamespace, "KUBECONFIG=" + c.Kubeconfig,
			"AWS_SHARED_CREDENTIALS_FILE=" + creds},
		NetNS: c.NetNS,
	})
	if err != nil {
		return err
	}
	c.velero = p
	return waitReady(ctx, p, 2*time.Minute, func(ctx context.Context) error {
		var bsl velerov1.BackupStorageLocation
		if err := c.Client.Get(ctx, crclient.ObjectKey{Namespace: c.VeleroNamespace, Name: BackupStorageLocation}, &bsl); err != nil {
			return err
		}
		if bsl.Status.Phase != velerov1.BackupStorageLocationPhaseAvailable {
			return fmt.Errorf("BackupStorageLocation %s phase %q: %s", bsl.Name, bsl.Status.Phase, bsl.Status.Message)
		}
		return nil
	})
}

// fillPluginDir puts velero-plugin-for-aws and the given plugins into the plugin folder as
// copies: Velero then runs exactly what the stack started with, even if `make build` replaces
// a binary meanwhile.
func (c *Cluster) fillPluginDir(plugins []string) error {
	if err := os.RemoveAll(c.PluginDir); err != nil {
		return err
	}
	if err := os.MkdirAll(c.PluginDir, 0o755); err != nil {
		return err
	}
	for _, p := range append([]string{c.stack.tools.awsPlugin}, plugins...) {
		if err := copyExecutable(p, filepath.Join(c.PluginDir, filepath.Base(p))); err != nil {
			return fmt.Errorf("installing plugin %s: %w", p, err)
		}
	}
	return nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src) // follows the cache's version symlinks
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// addPluginFromImage installs a Velero plugin image the way `velero plugin add IMAGE` does: its
// container runs (as its own user, 65532) with Velero's plugin folder at /target and copies its
// binary there. Velero runs as a host process here, so the folder is a hostPath volume instead of
// the Velero pod's emptyDir, and a pod in Velero's namespace stands for the init container.
func (c *Cluster) addPluginFromImage(ctx context.Context, image string) error {
	const uid = 65532
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := os.Chown(c.PluginDir, uid, uid); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.VeleroNamespace, GenerateName: "velero-plugin-add-"},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{
				Name: "plugin", Image: c.Image(image), ImagePullPolicy: corev1.PullIfNotPresent,
				VolumeMounts: []corev1.VolumeMount{{Name: "plugins", MountPath: "/target"}},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes: []corev1.Volume{{Name: "plugins", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: c.PluginDir, Type: ptr.To(corev1.HostPathDirectory)},
			}}},
		},
	}
	pods := c.Kube.CoreV1().Pods(c.VeleroNamespace)
	var created *corev1.Pod
	// The namespace's default service account (ServiceAccount admission looks for it) comes from
	// the controller manager a moment after the namespace.
	err := c.poll(ctx, func(ctx context.Context) (bool, error) {
		var err error
		created, err = pods.Create(ctx, pod, metav1.CreateOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("creating the plugin's pod: %w", err)
	}
	defer func() { _ = pods.Delete(context.Background(), created.Name, metav1.DeleteOptions{}) }()
	var phase corev1.PodPhase
	err = c.poll(ctx, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	})
	if err != nil || phase != corev1.PodSucceeded {
		logs, _ := c.Kubectl(context.Background(), "-n", c.VeleroNamespace, "logs", created.Name)
		return fmt.Errorf("the plugin's pod %s ended %q (%v): %s", created.Name, phase, err, logs)
	}
	return nil
}

// RestartVelero restarts both Velero servers with another set of plugin binaries (see
// Options.Plugins; nil means ferry's). Benchmarks use it to compare Velero with and without
// ferry on the same clusters.
func (s *Stack) RestartVelero(ctx context.Context, plugins []string) error {
	paths, err := s.pluginPaths(plugins)
	if err != nil {
		return err
	}
	return s.eachCluster(func(c *Cluster) error {
		if c.velero != nil {
			if err := c.velero.Stop(15 * time.Second); err != nil {
				return err
			}
		}
		return c.startVelero(ctx, paths)
	})
}

// VeleroLog is the path of the cluster's Velero server log (plugin output included).
func (c *Cluster) VeleroLog() string {
	if c.velero == nil {
		return ""
	}
	return c.velero.LogPath
}
