package restoreitemaction

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
)

// unpinNodes removes what ties a pod spec to a node of the source cluster: nodeName, a
// kubernetes.io/hostname nodeSelector, and hostname / metadata.name terms of node affinity. Other
// selectors (zones, roles, custom labels) are the user's intent and stay. nodeName is left alone
// when clearNodeName is false (Velero's own pod action clears it for Pods). It reports whether
// anything changed.
func unpinNodes(spec map[string]any, clearNodeName bool) bool {
	changed := false
	if _, ok := spec["nodeName"]; ok && clearNodeName {
		delete(spec, "nodeName")
		changed = true
	}
	if sel, ok := spec["nodeSelector"].(map[string]any); ok {
		if _, ok := sel[keys.HostnameLabel]; ok {
			delete(sel, keys.HostnameLabel)
			changed = true
			if len(sel) == 0 {
				delete(spec, "nodeSelector")
			}
		}
	}
	na, found, _ := unstructured.NestedMap(spec, "affinity", "nodeAffinity")
	if !found {
		return changed
	}
	if req, ok := na["requiredDuringSchedulingIgnoredDuringExecution"].(map[string]any); ok {
		terms, _ := req["nodeSelectorTerms"].([]any)
		kept, c := filterTerms(terms)
		changed = changed || c
		if len(kept) == 0 {
			delete(na, "requiredDuringSchedulingIgnoredDuringExecution")
		} else {
			req["nodeSelectorTerms"] = kept
		}
	}
	if pref, ok := na["preferredDuringSchedulingIgnoredDuringExecution"].([]any); ok {
		var kept []any
		for _, p := range pref {
			pm, _ := p.(map[string]any)
			term, _ := pm["preference"].(map[string]any)
			if out, c := filterTerm(term); c {
				changed = true
				if out == nil {
					continue
				}
				pm["preference"] = out
			}
			kept = append(kept, p)
		}
		if len(kept) == 0 {
			delete(na, "preferredDuringSchedulingIgnoredDuringExecution")
		} else {
			na["preferredDuringSchedulingIgnoredDuringExecution"] = kept
		}
	}
	if changed {
		if len(na) == 0 {
			unstructured.RemoveNestedField(spec, "affinity", "nodeAffinity")
			if aff, _ := spec["affinity"].(map[string]any); len(aff) == 0 {
				delete(spec, "affinity")
			}
		} else {
			_ = unstructured.SetNestedMap(spec, na, "affinity", "nodeAffinity")
		}
	}
	return changed
}

// filterTerms drops node-name requirements from each term, and terms left empty.
func filterTerms(terms []any) ([]any, bool) {
	var kept []any
	changed := false
	for _, t := range terms {
		tm, _ := t.(map[string]any)
		out, c := filterTerm(tm)
		changed = changed || c
		if out != nil {
			kept = append(kept, out)
		}
	}
	return kept, changed
}

// filterTerm removes hostname matchExpressions and metadata.name matchFields from a node
// selector term; nil when nothing is left of it.
func filterTerm(term map[string]any) (map[string]any, bool) {
	if term == nil {
		return nil, false
	}
	changed := false
	for field, key := range map[string]string{"matchExpressions": keys.HostnameLabel, "matchFields": "metadata.name"} {
		list, _ := term[field].([]any)
		var kept []any
		for _, e := range list {
			em, _ := e.(map[string]any)
			if em["key"] == key {
				changed = true
				continue
			}
			kept = append(kept, e)
		}
		if len(kept) == 0 {
			delete(term, field)
		} else {
			term[field] = kept
		}
	}
	if len(term) == 0 {
		return nil, changed
	}
	return term, changed
}
