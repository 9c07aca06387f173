package restoreitemaction

import (
	"github.com/sirupsen/logrus"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// SkipAction leaves out what the target cluster must not get from the backup:
//   - Builds and build pods: history of the source; the target's BuildConfigs make new ones.
//   - Jobs owned by a CronJob and ReplicationControllers owned by a DeploymentConfig: their
//     owner creates them on the target.
//   - Serving-certificate Secrets: the target's service CA issues its own.
//   - Pull secrets generated for a service account: the target generates its own.
//   - In a restore of a stage backup, the PVCs, PVs and workloads: the final restore brings them
//     (with the data and replica counts of the cut-over), so a stage restore never creates an
//     object the final restore must own, and the app never starts on the target early.
type SkipAction struct {
	log logrus.FieldLogger
}

var _ riav1.RestoreItemAction = (*SkipAction)(nil)

func NewSkipAction(log logrus.FieldLogger) *SkipAction { return &SkipAction{log: log} }

func (a *SkipAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: append([]string{
		"secrets", "builds.build.openshift.io", "persistentvolumeclaims", "persistentvolumes",
	}, kube.PodTemplateResources...)}, nil
}

func (a *SkipAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, ok := input.Item.(*unstructured.Unstructured)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	if why := skipReason(input); why != "" {
		a.log.WithFields(logrus.Fields{"kind": u.GetKind(), "namespace": u.GetNamespace(), "name": u.GetName()}).Infof("not restored: %s", why)
		return velero.NewRestoreItemActionExecuteOutput(input.Item).WithoutRestore(), nil
	}
	return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
}

// skipReason says why an item is not restored, or "" when it is.
func skipReason(input *velero.RestoreItemActionExecuteInput) string {
	_, u, ok := restoredItem(input)
	if !ok {
		return ""
	}
	kind, group := u.GetKind(), u.GroupVersionKind().Group
	ann := u.GetAnnotations()
	if ann[keys.BackupMigration] == keys.MigrationStage {
		if _, holdsPods := kube.PodSpecPath(kind); holdsPods || kind == "PersistentVolumeClaim" || kind == "PersistentVolume" {
			return "it comes from a stage backup; the final migration's restore brings it"
		}
	}
	switch {
	case kind == "Build" && group == "build.openshift.io":
		return "builds are the source's history; the target's BuildConfigs run new ones"
	case kind == "Pod" && ann[keys.BuildNameAnnotation] != "":
		return "it is a build pod"
	case kind == "Job" && ownedBy(u, "CronJob"):
		return "its CronJob creates it"
	case kind == "ReplicationController" && ownedBy(u, "DeploymentConfig"):
		return "its DeploymentConfig creates it"
	case kind == "Secret" && ann[keys.ServingCertOriginatingSvc] != "":
		return "it is a serving certificate; the target's service CA issues its own"
	case kind == "Secret" && isGeneratedPullSecret(u):
		return "it is a pull secret generated for a service account; the target generates its own"
	}
	return ""
}

func ownedBy(u *unstructured.Unstructured, kind string) bool {
	for _, ref := range u.GetOwnerReferences() {
		if ref.Kind == kind {
			return true
		}
	}
	return false
}

func isGeneratedPullSecret(u *unstructured.Unstructured) bool {
	typ, _, _ := unstructured.NestedString(u.Object, "type")
	if typ != "kubernetes.io/dockercfg" && typ != "kubernetes.io/dockerconfigjson" {
		return false
	}
	ann := u.GetAnnotations()
	if ann[keys.InternalRegistryAuthTokenSA] != "" {
		return true
	}
	sa := ann[keys.ServiceAccountNameAnnotation]
	return sa != "" && generatedPullSecret.MatchString(u.GetName())
}
