package podrunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// mountRoot is the only place pods may mount volumes: the runner puts a private tmpfs there.
const mountRoot = "/mnt"

// mount is one bind mount into a container's mount namespace.
type mount struct {
	source, target string
	readOnly       bool
	file           bool // the source is a file (subPath to a file)
}

// validateMounts rejects mounts the runner cannot place faithfully: outside /mnt, of a volume
// the pod does not define, or with a subPath that climbs out of its volume.
func validateMounts(pod *corev1.Pod) error {
	vols := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		vols[v.Name] = true
	}
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			clean := path.Clean(m.MountPath)
			if !path.IsAbs(m.MountPath) || !strings.HasPrefix(clean, mountRoot+"/") {
				return permanent("UnsupportedMountPath",
					"container %q mounts volume %q at %q: the pod runner mounts volumes only under %s/ (ferry's transfer pods mount there)",
					c.Name, m.Name, m.MountPath, mountRoot)
			}
			if !vols[m.Name] {
				return permanent("UnknownVolume", "container %q mounts volume %q, which the pod does not define", c.Name, m.Name)
			}
			if m.SubPath != "" && (path.IsAbs(m.SubPath) || strings.HasPrefix(path.Clean(m.SubPath), "..")) {
				return permanent("BadSubPath", "container %q mounts volume %q with subPath %q outside the volume", c.Name, m.Name, m.SubPath)
			}
			if m.SubPathExpr != "" {
				return permanent("UnsupportedSubPathExpr", "container %q mounts volume %q with subPathExpr, which the pod runner does not support", c.Name, m.Name)
			}
		}
	}
	return nil
}

// containerMounts maps a container's volumeMounts to bind mounts of host paths.
func containerMounts(c *corev1.Container, vols map[string]string) ([]mount, error) {
	var out []mount
	for _, m := range c.VolumeMounts {
		src, ok := vols[m.Name]
		if !ok {
			return nil, permanent("UnknownVolume", "container %q mounts volume %q, which the pod does not define", c.Name, m.Name)
		}
		if m.SubPath != "" {
			src = filepath.Join(src, m.SubPath)
		}
		st, err := os.Stat(src)
		if errors.Is(err, os.ErrNotExist) && m.SubPath != "" {
			// kubelet creates a missing subPath as a folder.
			err = os.MkdirAll(src, 0o755)
			st, _ = os.Stat(src)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %q of container %q: %w", m.Name, c.Name, err)
		}
		out = append(out, mount{source: src, target: path.Clean(m.MountPath), readOnly: m.ReadOnly, file: !st.IsDir()})
	}
	return out, nil
}

// prepareVolumes resolves every volume of the pod to a host path, waiting (as kubelet does)
// while a PVC is not bound or a Secret does not exist yet. Volume files go under the pod's
// folder.
func (w *podWorker) prepareVolumes(ctx context.Context) (map[string]string, error) {
	lastMsg := ""
	for {
		vols, err := w.tryVolumes(ctx)
		if err == nil {
			return vols, nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return nil, err
		}
		if msg := err.Error(); msg != lastMsg {
			lastMsg = msg
			w.log.Info("waiting for volumes", "reason", msg)
			w.mu.Lock()
			for _, cr := range append(append([]*containerRun(nil), w.initStatuses...), w.statuses...) {
				cr.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: msg}}
			}
			w.mu.Unlock()
			w.writeStatus(ctx)
		}
		select {
		case <-w.killCtx.Done():
			return nil, errKilled
		case <-ctx.Done():
			return nil, errKilled
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *podWorker) tryVolumes(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range w.pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		var err error
		switch {
		case v.PersistentVolumeClaim != nil:
			out[v.Name], err = w.pvcPath(ctx, v.PersistentVolumeClaim.ClaimName)
		case v.Secret != nil:
			err = w.writeSecretVolume(ctx, dir, v.Secret)
			out[v.Name] = dir
		case v.ConfigMap != nil:
			err = w.writeConfigMapVolume(ctx, dir, v.ConfigMap)
			out[v.Name] = dir
		case v.EmptyDir != nil:
			err = os.MkdirAll(dir, 0o777)
			out[v.Name] = dir
		case v.HostPath != nil:
			if v.HostPath.Type != nil && *v.HostPath.Type == corev1.HostPathDirectoryOrCreate {
				err = os.MkdirAll(v.HostPath.Path, 0o755)
			}
			out[v.Name] = v.HostPath.Path
		default:
			err = permanent("UnsupportedVolume", "volume %q: only persistentVolumeClaim, secret, configMap, emptyDir and hostPath volumes are supported by the pod runner", v.Name)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pvcPath is the host folder of a bound PVC's PV (a hostPath or local PV).
func (w *podWorker) pvcPath(ctx context.Context, claim string) (string, error) {
	pvc, err := w.r.client.CoreV1().PersistentVolumeClaims(w.namespace).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("persistentvolumeclaim %q not found", claim)
	}
	if err != nil {
		return "", err
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", fmt.Errorf("persistentvolumeclaim %q is not bound yet", claim)
	}
	pv, err := w.r.client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("persistentvolume %q of claim %q: %w", pvc.Spec.VolumeName, claim, err)
	}
	var p string
	switch {
	case pv.Spec.HostPath != nil:
		p = pv.Spec.HostPath.Path
	case pv.Spec.Local != nil:
		p = pv.Spec.Local.Path
	default:
		return "", permanent("UnsupportedVolume", "persistentvolume %q of claim %q is neither hostPath nor local: the pod runner can only mount folders", pv.Name, claim)
	}
	if st, err := os.Stat(p); err != nil || !st.IsDir() {
		return "", fmt.Errorf("persistentvolume %q of claim %q: folder %s does not exist yet", pv.Name, claim, p)
	}
	return p, nil
}

func (w *podWorker) writeSecretVolume(ctx context.Context, dir string, src *corev1.SecretVolumeSource) error {
	secret, err := w.r.client.CoreV1().Secrets(w.namespace).Get(ctx, src.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && src.Optional != nil && *src.Optional {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("secret %q: %w", src.SecretName, err)
	}
	return writeVolumeFiles(dir, secret.Data, src.Items, src.DefaultMode, src.Optional, "secret "+src.SecretName)
}

func (w *podWorker) writeConfigMapVolume(ctx context.Context, dir string, src *corev1.ConfigMapVolumeSource) error {
	cm, err := w.r.client.CoreV1().ConfigMaps(w.namespace).Get(ctx, src.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && src.Optional != nil && *src.Optional {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return fmt.Errorf("configmap %q: %w", src.Name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return writeVolumeFiles(dir, data, src.Items, src.DefaultMode, src.Optional, "configmap "+src.Name)
}

// writeVolumeFiles writes a Secret's or ConfigMap's keys as files, as kubelet projects them:
// every key (or only items, at their paths), mode defaultMode (0644) unless an item says.
func writeVolumeFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, defaultMode *int32, optional *bool, what string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if defaultMode != nil {
		mode = os.FileMode(*defaultMode) & os.ModePerm
	}
	type file struct {
		path string
		data []byte
		mode os.FileMode
	}
	var files []file
	if len(items) == 0 {
		for k, v := range data {
			files = append(files, file{k, v, mode})
		}
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return permanent("MissingKey", "%s has no key %q", what, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode) & os.ModePerm
		}
		if path.IsAbs(it.Path) || strings.HasPrefix(path.Clean(it.Path), "..") {
			return permanent("BadItemPath", "%s item %q: path %q leaves the volume", what, it.Key, it.Path)
		}
		files = append(files, file{it.Path, v, m})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil { // WriteFile's mode is filtered by umask
			return err
		}
	}
	return nil
}
