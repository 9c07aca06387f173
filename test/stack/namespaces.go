package stack

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// UniqueName returns prefix plus a random suffix, a valid namespace name (prefix is shortened
// if needed). Tests use it for namespaces, backups and restores, which outlive a test in a
// shared stack.
func UniqueName(prefix string) string {
	const suffixLen = 6
	prefix = strings.ToLower(strings.Trim(prefix, "-"))
	if max := validation.DNS1123LabelMaxLength - suffixLen - 1; len(prefix) > max {
		prefix = strings.TrimRight(prefix[:max], "-")
	}
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, suffixLen)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return prefix + "-" + string(b)
}

// CreateNamespace creates a namespace (with labels, may be nil) in the cluster.
func (c *Cluster) CreateNamespace(ctx context.Context, name string, labels map[string]string) error {
	_, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating namespace %s in the %s cluster: %w", name, c.Name, err)
	}
	return nil
}

// DeleteNamespace deletes a namespace and waits until it is gone (the controller manager
// empties it first). A missing namespace is not an error.
func (c *Cluster) DeleteNamespace(ctx context.Context, name string) error {
	err := c.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s in the %s cluster: %w", name, c.Name, err)
	}
	for {
		_, err := c.Kube.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s in the %s cluster still exists: %w", name, c.Name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Namespace creates a fresh namespace for the test on the source cluster and returns its name.
// When the test ends it is deleted from both clusters (restores put it on the target), so
// tests sharing a stack never see each other's objects.
func (s *Stack) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName(prefix)
	if err := s.Source.CreateNamespace(t.Context(), name, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, c := range s.Clusters() {
			if err := c.DeleteNamespace(ctx, name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return name
}
