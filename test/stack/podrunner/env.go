package podrunner

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// systemPath is the PATH of a Debian container image; Options.PathDirs go before it.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// containerEnv builds a container's environment as kubelet does: the image's basics (PATH,
// HOSTNAME, HOME), then envFrom, then env with $(VAR) references expanded. Nothing of the
// runner's own environment leaks in.
func (w *podWorker) containerEnv(ctx context.Context, c *corev1.Container) ([]string, error) {
	path := systemPath
	if len(w.r.opts.PathDirs) > 0 {
		path = strings.Join(w.r.opts.PathDirs, ":") + ":" + systemPath
	}
	vars := map[string]string{"PATH": path, "HOSTNAME": w.name, "HOME": "/root"}
	order := []string{"PATH", "HOSTNAME", "HOME"}
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, from := range c.EnvFrom {
		data, err := w.envFromSource(ctx, from)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := from.Prefix + k
			if len(validation.IsEnvVarName(name)) == 0 {
				set(name, data[k])
			}
		}
	}
	for _, e := range c.Env {
		v := expand(e.Value, vars)
		if e.ValueFrom != nil {
			var err error
			if v, err = w.envValueFrom(ctx, c, e); err != nil {
				return nil, err
			}
		}
		set(e.Name, v)
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

func (w *podWorker) envFromSource(ctx context.Context, from corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case from.SecretRef != nil:
		s, err := w.r.client.CoreV1().Secrets(w.namespace).Get(ctx, from.SecretRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && from.SecretRef.Optional != nil && *from.SecretRef.Optional {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom secret %q: %w", from.SecretRef.Name, err)
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	case from.ConfigMapRef != nil:
		cm, err := w.r.client.CoreV1().ConfigMaps(w.namespace).Get(ctx, from.ConfigMapRef.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) && from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("envFrom configmap %q: %w", from.ConfigMapRef.Name, err)
		}
		for k, v := range cm.Data {
			out[k] = v
		}
	}
	return out, nil
}

func (w *podWorker) envValueFrom(ctx context.Context, c *corev1.Container, e corev1.EnvVar) (string, error) {
	src := e.ValueFrom
	switch {
	case src.FieldRef != nil:
		return w.fieldValue(src.FieldRef.FieldPath)
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		s, err := w.r.client.CoreV1().Secrets(w.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		optional := ref.Optional != nil && *ref.Optional
		if apierrors.IsNotFound(err) && optional {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("env %s of container %q: secret %q: %w", e.Name, c.Name, ref.Name, err)
		}
		v, ok := s.Data[ref.Key]
		if !ok && !optional {
			return "", fmt.Errorf("env %s of container %q: secret %q has no key %q", e.Name, c.Name, ref.Name, ref.Key)
		}
		return string(v), nil
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		cm, err := w.r.client.CoreV1().ConfigMaps(w.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		optional := ref.Optional != nil && *ref.Optional
		if apierrors.IsNotFound(err) && optional {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("env %s of container %q: configmap %q: %w", e.Name, c.Name, ref.Name, err)
		}
		v, ok := cm.Data[ref.Key]
		if !ok && !optional {
			return "", fmt.Errorf("env %s of container %q: configmap %q has no key %q", e.Name, c.Name, ref.Name, ref.Key)
		}
		return v, nil
	}
	return "", permanent("UnsupportedEnv", "env %s of container %q: only fieldRef, secretKeyRef and configMapKeyRef are supported by the pod runner", e.Name, c.Name)
}

// fieldValue answers the downward API's fieldRef paths.
func (w *podWorker) fieldValue(fieldPath string) (string, error) {
	pod := w.pod
	if k, ok := strings.CutPrefix(fieldPath, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(fieldPath, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch fieldPath {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return w.r.opts.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return w.address(), nil
	case "status.hostIP", "status.hostIPs":
		return w.r.opts.NodeIP, nil
	}
	return "", permanent("UnsupportedFieldRef", "fieldRef %q is not supported by the pod runner", fieldPath)
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func expandAll(in []string, vars map[string]string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = expand(s, vars)
	}
	return out
}

// expand replaces $(NAME) with the variable's value, as Kubernetes does in env values, command
// and args: an unknown $(NAME) stays as written, and $$ is a literal $ (so $$(NAME) is never
// expanded).
func expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok && name != "" {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}
