package restoreitemaction

import (
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// restoredItem returns the item Velero is about to restore and the item as it was backed up
// (annotations ferry wrote at backup time are read there: Velero's own actions may have
// changed the other). ok is false for an item that is not unstructured: actions pass it on.
func restoredItem(input *velero.RestoreItemActionExecuteInput) (item, backedUp *unstructured.Unstructured, ok bool) {
	item, ok = input.Item.(*unstructured.Unstructured)
	if !ok {
		return nil, nil, false
	}
	backedUp, _ = input.ItemFromBackup.(*unstructured.Unstructured)
	if backedUp == nil {
		backedUp = item
	}
	return item, backedUp, true
}

// once returns fn(v) while v is still what the backup had in the same field (backedUp, read from
// ItemFromBackup), and v as it is otherwise: a restore action that ran before ferry's and changed
// the field owns it. That keeps a rewrite from happening twice next to openshift-velero-plugin,
// which rewrites some of the same fields: Velero runs the actions of the two plugin binaries one
// binary after the other in file-name order (pkg/plugin/clientmgmt/process/registry.go,
// readPluginsDir), each on the previous action's output, with ItemFromBackup unchanged
// (pkg/restore/restore.go, restoreItem). Which set runs first must not matter, so ferry checks
// the value itself rather than the order. See docs/openshift-velero-plugin.md.
func once(v, backedUp string, fn func(string) string) string {
	if v != backedUp {
		return v
	}
	return fn(v)
}

// at returns list[i], or "" past its end.
func at(list []string, i int) string {
	if i < len(list) {
		return list[i]
	}
	return ""
}
