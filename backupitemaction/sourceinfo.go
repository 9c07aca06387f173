package backupitemaction

import (
	"context"
	"sync"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// SourceInfoAction stamps the source cluster's internal registry host and Kubernetes version on
// every object whose image references the restore may rewrite, and the backup's migration kind
// (stage or final) so a restore knows one from the other. On a cluster with no internal registry
// (plain Kubernetes without the internalRegistry key) it records no registry information.
// Services carry no image references: they get only the migration kind.
// Discovery runs once per plugin process, i.e. once per backup.
type SourceInfoAction struct {
	log  logrus.FieldLogger
	info func() sourceInfo
}

type sourceInfo struct{ registry, version string }

var _ biav1.BackupItemAction = (*SourceInfoAction)(nil)

func NewSourceInfoAction(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) *SourceInfoAction {
	return &SourceInfoAction{log: log, info: sync.OnceValue(func() sourceInfo {
		override := ""
		if c, err := cfg(); err != nil {
			log.WithError(err).Warn("ferry-config is invalid; discovering the internal registry instead of using its internalRegistry key")
		} else {
			override = c.InternalRegistry
		}
		ctx := context.Background()
		registry, err := imagecopy.InternalRegistry(ctx, clients, override)
		if err != nil {
			log.WithError(err).Warn("could not discover the internal registry; image references will not be rewritten at restore")
			return sourceInfo{}
		}
		if registry == "" {
			log.Debug("no internal registry on this cluster; nothing to record")
			return sourceInfo{}
		}
		version, err := kube.ServerVersion(clients.Discovery)
		if err != nil {
			log.WithError(err).Warn("could not read the server version")
		}
		log.Infof("source internal registry is %s (Kubernetes %s)", registry, version)
		return sourceInfo{registry: registry, version: version}
	})}
}

func (a *SourceInfoAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: append(append([]string{}, kube.PodTemplateResources...),
		"buildconfigs.build.openshift.io", "imagestreams.image.openshift.io", "imagestreamtags.image.openshift.io", "services")}, nil
}

func (a *SourceInfoAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, error) {
	// A mistyped migration label is reported once, by the PVC action; here it is just not a migration.
	mtype, migrating, _ := migrationType(backup)
	u := &unstructured.Unstructured{Object: item.UnstructuredContent()}
	var info sourceInfo
	if u.GetKind() != "Service" {
		info = a.info()
	}
	if info.registry == "" && !migrating {
		return item, nil, nil
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	if info.registry != "" {
		ann[keys.SourceRegistry] = info.registry
		if info.version != "" {
			ann[keys.SourceServerVersion] = info.version
		}
	}
	if migrating {
		ann[keys.BackupMigration] = string(mtype)
	}
	u.SetAnnotations(ann)
	return u, nil, nil
}
