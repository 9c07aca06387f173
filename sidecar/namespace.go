package sidecar

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// carriedAnnotations go with a namespace to the target: OpenShift assigns each namespace its
// own UID range, supplemental groups and SELinux (MCS) label, and copied files are owned by the
// source's.
var carriedAnnotations = []string{keys.NamespaceUIDRange, keys.NamespaceSupplementalGroups, keys.NamespaceMCS}

// TargetNamespace is what EnsureTargetNamespace found or did.
type TargetNamespace struct {
	// Created: the namespace did not exist and was created.
	Created bool
	// UIDRange and SourceUIDRange differ when an existing namespace has another OpenShift UID
	// range than the source's: copied files keep owners its pods may not run as.
	UIDRange, SourceUIDRange string
}

// UIDRangeDiffers reports whether an existing target namespace has another UID range.
func (t TargetNamespace) UIDRangeDiffers() bool {
	return t.UIDRange != "" && t.SourceUIDRange != "" && t.UIDRange != t.SourceUIDRange
}

// EnsureTargetNamespace creates namespace targetNS on the target unless it exists, carrying the
// source namespace's OpenShift identity annotations. An existing namespace is left as it is;
// one being deleted is an error (retried: it may be gone soon).
func EnsureTargetNamespace(ctx context.Context, source, target *kube.Clients, sourceNS, targetNS string) (TargetNamespace, error) {
	src, err := source.Kube.CoreV1().Namespaces().Get(ctx, sourceNS, metav1.GetOptions{})
	if err != nil {
		return TargetNamespace{}, fmt.Errorf("reading source namespace %s: %w", sourceNS, err)
	}
	carried := map[string]string{}
	for _, k := range carriedAnnotations {
		if v, ok := src.Annotations[k]; ok {
			carried[k] = v
		}
	}
	out := TargetNamespace{SourceUIDRange: carried[keys.NamespaceUIDRange]}
	cur, err := target.Kube.CoreV1().Namespaces().Get(ctx, targetNS, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: targetNS, Annotations: carried}}
		if _, err := target.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return out, fmt.Errorf("creating namespace %s on the target: %w", targetNS, err)
		}
		out.Created = true
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("reading namespace %s on the target (%s): %w", targetNS, Host(target), err)
	}
	if cur.DeletionTimestamp != nil {
		return out, fmt.Errorf("namespace %s on the target is being deleted", targetNS)
	}
	out.UIDRange = cur.Annotations[keys.NamespaceUIDRange]
	return out, nil
}

// Host names a cluster in messages by its API server URL (never its credentials).
func Host(c *kube.Clients) string {
	if c.Config != nil && c.Config.Host != "" {
		return c.Config.Host
	}
	return "the target cluster"
}
