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
