// Package restoreitemaction holds ferry's Velero RestoreItemActions, one per file.
//
// Actions edit the unstructured item in place rather than converting it to a Go type and back:
// a round trip through a type drops every field that type does not know (a newer API version, a
// kind decoded as its cousin), and a restore must not lose data.
package restoreitemaction

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/kube"
)

// podSpec returns the item's pod spec map (nil when the kind has none or it is absent).
func podSpec(u *unstructured.Unstructured) (map[string]any, error) {
	path, ok := kube.PodSpecPath(u.GetKind())
	if !ok {
		return nil, nil
	}
	spec, found, err := unstructured.NestedMap(u.Object, path...)
	if err != nil {
		return nil, fmt.Errorf("%s %s/%s: reading the pod spec: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	if !found {
		return nil, nil
	}
	return spec, nil
}

// setPodSpec writes a pod spec map back.
func setPodSpec(u *unstructured.Unstructured, spec map[string]any) error {
	path, _ := kube.PodSpecPath(u.GetKind())
	return unstructured.SetNestedMap(u.Object, spec, path...)
}

// containerLists are the pod spec fields holding containers.
var containerLists = []string{"initContainers", "containers", "ephemeralContainers"}

// forEachContainer calls fn on each container map of a pod spec, with a key naming it
// ("<list>/<container name>").
func forEachContainer(spec map[string]any, fn func(key string, c map[string]any)) {
	for _, field := range containerLists {
		list, _ := spec[field].([]any)
		for _, c := range list {
			if m, ok := c.(map[string]any); ok {
				name, _ := m["name"].(string)
				fn(field+"/"+name, m)
			}
		}
	}
}

// containerImages returns a pod spec's images by container key (see forEachContainer). Containers
// are matched by name, not position: Velero's own actions add init containers (restore hooks,
// volume restores) before the plugins run.
func containerImages(spec map[string]any) map[string]string {
	images := map[string]string{}
	forEachContainer(spec, func(key string, c map[string]any) {
		images[key], _ = c["image"].(string)
	})
	return images
}
