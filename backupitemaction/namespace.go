package backupitemaction

import (
	"fmt"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
)

// NamespaceAction leaves a project's node selector (openshift.io/node-selector) out of a
// migration backup: it names the source's node labels, which the target's nodes rarely have, and
// a selector no node matches keeps every pod of the namespace Pending. The target project's
// default applies instead. ferry-config keepNamespaceNodeSelector keeps it. (Velero creates
// namespaces from the backup before any restore plugin runs, so this is done at backup; the live
// namespace is never changed.)
type NamespaceAction struct {
	log    logrus.FieldLogger
	config func() (*config.Config, error)
}

var _ biav1.BackupItemAction = (*NamespaceAction)(nil)

func NewNamespaceAction(log logrus.FieldLogger, cfg func() (*config.Config, error)) *NamespaceAction {
	return &NamespaceAction{log: log, config: cfg}
}

func (a *NamespaceAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"namespaces"}}, nil
}

func (a *NamespaceAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, error) {
	_, migrating, _ := migrationType(backup)
	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	selector, found := u.GetAnnotations()[keys.NamespaceNodeSelector]
	if !migrating || !found || selector == "" {
		return u, nil, nil
	}
	cfg, err := a.config()
	if err != nil {
		return nil, nil, fmt.Errorf("namespace %s: %w", u.GetName(), err)
	}
	if cfg.KeepNamespaceNodeSelector {
		return u, nil, nil
	}
	ann := u.GetAnnotations()
	delete(ann, keys.NamespaceNodeSelector)
	u.SetAnnotations(ann)
	a.log.WithFields(logrus.Fields{"name": u.GetName(), "backup": backup.Name}).
		Infof("left the project node selector %q out (source node labels); the target's default applies (keepNamespaceNodeSelector keeps it)", selector)
	return u, nil, nil
}
