// Command ferry-plugins is ferry's Velero plugin suite: one binary serving every backup and
// restore item action. Velero runs it from its plugin directory (`velero plugin add`).
package main

import (
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	veleroclient "github.com/vmware-tanzu/velero/pkg/client"
	"github.com/vmware-tanzu/velero/pkg/plugin/framework"

	"github.com/ferry-dev/ferry/backupitemaction"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/restoreitemaction"
)

func main() {
	// Velero hands its plugins its own flags (--kubeconfig, --namespace, --log-level, …).
	factory := veleroclient.NewFactory("ferry-plugins", veleroclient.VeleroConfig{})
	factory.BindFlags(pflag.CommandLine)
	clients := kube.FromVeleroFactory(factory)
	cfg := kube.LazyConfig(clients)

	withClients := func(newAction func(logrus.FieldLogger, *kube.Clients) any) func(logrus.FieldLogger) (any, error) {
		return func(log logrus.FieldLogger) (any, error) {
			c, err := clients()
			if err != nil {
				return nil, err
			}
			return newAction(log, c), nil
		}
	}
	plain := func(newAction func(logrus.FieldLogger) any) func(logrus.FieldLogger) (any, error) {
		return func(log logrus.FieldLogger) (any, error) { return newAction(log), nil }
	}

	framework.NewServer().
		BindFlags(pflag.CommandLine).
		RegisterBackupItemActionV2("ferry.dev/pvc-backup", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return backupitemaction.NewPVCAction(l, c, cfg)
		})).
		RegisterBackupItemActionV2("ferry.dev/imagestream-backup", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return backupitemaction.NewImageStreamAction(l, c, cfg)
		})).
		RegisterBackupItemAction("ferry.dev/pv-backup", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return backupitemaction.NewPVAction(l, c, cfg)
		})).
		RegisterBackupItemAction("ferry.dev/namespace-backup", plain(func(l logrus.FieldLogger) any {
			return backupitemaction.NewNamespaceAction(l, cfg)
		})).
		RegisterBackupItemAction("ferry.dev/serviceaccount-backup", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return backupitemaction.NewServiceAccountAction(l, c)
		})).
		RegisterBackupItemAction("ferry.dev/statefulset-backup", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return backupitemaction.NewStatefulSetAction(l, c, cfg)
		})).
		RegisterBackupItemAction("ferry.dev/source-info-backup", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return backupitemaction.NewSourceInfoAction(l, c, cfg)
		})).
		RegisterRestoreItemAction("ferry.dev/buildconfig-restore", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return restoreitemaction.NewBuildConfigAction(l, c, cfg)
		})).
		RegisterRestoreItemActionV2("ferry.dev/imagestream-restore", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return restoreitemaction.NewImageStreamAction(l, c, cfg)
		})).
		RegisterRestoreItemActionV2("ferry.dev/imagestreamtag-restore", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return restoreitemaction.NewImageStreamTagAction(l, c, cfg)
		})).
		RegisterRestoreItemAction("ferry.dev/podspec-restore", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return restoreitemaction.NewPodSpecAction(l, c, cfg)
		})).
		RegisterRestoreItemAction("ferry.dev/pv-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewPVAction(l) })).
		RegisterRestoreItemAction("ferry.dev/pvc-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewPVCAction(l) })).
		RegisterRestoreItemAction("ferry.dev/rolebinding-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewRoleBindingAction(l) })).
		RegisterRestoreItemAction("ferry.dev/route-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewRouteAction(l) })).
		RegisterRestoreItemAction("ferry.dev/scc-restore", withClients(func(l logrus.FieldLogger, c *kube.Clients) any {
			return restoreitemaction.NewSCCAction(l, c)
		})).
		RegisterRestoreItemAction("ferry.dev/service-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewServiceAction(l) })).
		RegisterRestoreItemAction("ferry.dev/serviceaccount-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewServiceAccountAction(l) })).
		RegisterRestoreItemAction("ferry.dev/statefulset-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewStatefulSetAction(l) })).
		RegisterRestoreItemAction("ferry.dev/skip-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewSkipAction(l) })).
		RegisterRestoreItemAction("ferry.dev/unquiesce-restore", plain(func(l logrus.FieldLogger) any { return restoreitemaction.NewUnquiesceAction(l) })).
		Serve()
}
