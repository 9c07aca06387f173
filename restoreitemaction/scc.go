package restoreitemaction

import (
	"context"
	"fmt"
	"strings"

	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	riav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/restoreitemaction/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/retry"

	"github.com/ferry-dev/ferry/internal/kube"
)

// SCCAction makes SecurityContextConstraints follow the namespace mapping: service-account users
// ("system:serviceaccount:<ns>:<sa>") and groups ("system:serviceaccounts:<ns>") get the mapped
// namespace. When the SCC already exists on the target (anyuid, privileged, or one an admin made)
// Velero would skip it and the app's service accounts would lose their grant, so the grants for
// the restored namespaces are added to the live SCC instead (nothing is ever removed from it).
type SCCAction struct {
	log     logrus.FieldLogger
	clients *kube.Clients
}

var _ riav1.RestoreItemAction = (*SCCAction)(nil)

func NewSCCAction(log logrus.FieldLogger, clients *kube.Clients) *SCCAction {
	return &SCCAction{log: log, clients: clients}
}

func (a *SCCAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"securitycontextconstraints.security.openshift.io"}}, nil
}

func (a *SCCAction) Execute(input *velero.RestoreItemActionExecuteInput) (*velero.RestoreItemActionExecuteOutput, error) {
	u, from, ok := restoredItem(input)
	if !ok {
		return velero.NewRestoreItemActionExecuteOutput(input.Item), nil
	}
	nsMap := namespaceMapping(input)
	users, _, _ := unstructured.NestedStringSlice(u.Object, "users")
	groups, _, _ := unstructured.NestedStringSlice(u.Object, "groups")
	backedUpUsers, _, _ := unstructured.NestedStringSlice(from.Object, "users")
	backedUpGroups, _, _ := unstructured.NestedStringSlice(from.Object, "groups")
	ctx := context.Background()
	log := a.log.WithField("name", u.GetName())

	live, err := a.clients.Security.SecurityV1().SecurityContextConstraints().Get(ctx, u.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// openshift-velero-plugin maps users too: what it mapped before ferry ran stays (see once).
		for i := range users {
			users[i] = once(users[i], at(backedUpUsers, i), func(s string) string { return mapUserName(s, nsMap) })
		}
		for i := range groups {
			groups[i] = once(groups[i], at(backedUpGroups, i), func(s string) string { return mapGroupName(s, nsMap) })
		}
		if err := setStrings(u, "users", users); err != nil {
			return nil, err
		}
		if err := setStrings(u, "groups", groups); err != nil {
			return nil, err
		}
		return velero.NewRestoreItemActionExecuteOutput(u), nil
	}
	if err != nil {
		return nil, fmt.Errorf("SecurityContextConstraints %s: reading the target's: %w", u.GetName(), err)
	}

	scope, err := a.restoredNamespaces(ctx, input.Restore)
	if err != nil {
		return nil, err
	}
	// The grants come from the backed-up lists: an action before ferry's may have mapped the item's.
	addUsers := grantsFor(backedUpUsers, "system:serviceaccount:", scope, func(s string) string { return mapUserName(s, nsMap) })
	addGroups := grantsFor(backedUpGroups, "system:serviceaccounts:", scope, func(s string) string { return mapGroupName(s, nsMap) })
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := a.clients.Security.SecurityV1().SecurityContextConstraints().Get(ctx, live.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		u, g := sets.New(cur.Users...), sets.New(cur.Groups...)
		missingU, missingG := sets.New(addUsers...).Difference(u), sets.New(addGroups...).Difference(g)
		if missingU.Len() == 0 && missingG.Len() == 0 {
			return nil
		}
		cur.Users = append(cur.Users, sets.List(missingU)...)
		cur.Groups = append(cur.Groups, sets.List(missingG)...)
		if _, err := a.clients.Security.SecurityV1().SecurityContextConstraints().Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
		log.Infof("target already has this SCC: granted it to %v", append(sets.List(missingU), sets.List(missingG)...))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("SecurityContextConstraints %s: adding the restored service accounts to the target's: %w", u.GetName(), err)
	}
	return velero.NewRestoreItemActionExecuteOutput(u).WithoutRestore(), nil
}

// grantsFor maps the service-account entries of source namespaces in scope (nil scope: all).
func grantsFor(entries []string, prefix string, scope sets.Set[string], mapName func(string) string) []string {
	var out []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e, prefix)
		if !ok {
			continue
		}
		ns, _, _ := strings.Cut(rest, ":")
		if scope != nil && !scope.Has(ns) {
			continue
		}
		out = append(out, mapName(e))
	}
	return out
}

// restoredNamespaces returns the source namespaces this restore brings over, or nil for "all of
// the backup's": the restore's own list, else the backup's.
func (a *SCCAction) restoredNamespaces(ctx context.Context, restore *velerov1.Restore) (sets.Set[string], error) {
	if restore == nil {
		return nil, nil
	}
	if s := namespaceList(restore.Spec.IncludedNamespaces); s != nil {
		return s, nil
	}
	u, err := a.clients.Dynamic.Resource(velerov1.SchemeGroupVersion.WithResource("backups")).Namespace(restore.Namespace).Get(ctx, restore.Spec.BackupName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || restore.Spec.BackupName == "" {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading backup %s: %w", restore.Spec.BackupName, err)
	}
	var b velerov1.Backup
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &b); err != nil {
		return nil, err
	}
	return namespaceList(b.Spec.IncludedNamespaces), nil
}

func namespaceList(list []string) sets.Set[string] {
	if len(list) == 0 {
		return nil
	}
	for _, ns := range list {
		if ns == "*" || strings.ContainsAny(ns, "*?[") {
			return nil // a glob: the entries' own namespaces are what was backed up
		}
	}
	return sets.New(list...)
}

func setStrings(u *unstructured.Unstructured, field string, list []string) error {
	if list == nil {
		return nil
	}
	return unstructured.SetNestedStringSlice(u.Object, list, field)
}
