package backupitemaction

import (
	"context"
	"fmt"
	"strings"
	"sync"

	securityv1 "github.com/openshift/api/security/v1"
	"github.com/sirupsen/logrus"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/plugin/velero"
	biav1 "github.com/vmware-tanzu/velero/pkg/plugin/velero/backupitemaction/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferry-dev/ferry/internal/kube"
)

// SCCResource is the group-resource of OpenShift's SecurityContextConstraints.
var SCCResource = schema.GroupResource{Group: "security.openshift.io", Resource: "securitycontextconstraints"}

// ServiceAccountAction brings along the SecurityContextConstraints that grant something to a
// backed-up service account (by user name or by its namespace's service-account group), so the
// app's pods are admitted on the target. Cluster-wide grants (system:authenticated,
// system:serviceaccounts) belong to the cluster, not to the app, and are left out. On clusters
// without the SCC API it does nothing.
type ServiceAccountAction struct {
	log     logrus.FieldLogger
	clients *kube.Clients
	// sccs lists SCCs once per plugin process (one process per backup).
	sccs func() ([]securityv1.SecurityContextConstraints, error)
}

var _ biav1.BackupItemAction = (*ServiceAccountAction)(nil)

func NewServiceAccountAction(log logrus.FieldLogger, clients *kube.Clients) *ServiceAccountAction {
	return &ServiceAccountAction{log: log, clients: clients, sccs: sync.OnceValues(func() ([]securityv1.SecurityContextConstraints, error) {
		list, err := clients.Security.SecurityV1().SecurityContextConstraints().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("listing SecurityContextConstraints: %w", err)
		}
		return list.Items, nil
	})}
}

func (a *ServiceAccountAction) AppliesTo() (velero.ResourceSelector, error) {
	return velero.ResourceSelector{IncludedResources: []string{"serviceaccounts"}}, nil
}

func (a *ServiceAccountAction) Execute(item runtime.Unstructured, backup *velerov1.Backup) (runtime.Unstructured, []velero.ResourceIdentifier, error) {
	served, err := a.clients.APIs.Has(kube.SecurityGV, SCCResource.Resource)
	if err != nil || !served {
		return item, nil, err
	}
	meta, err := metaOf(item)
	if err != nil {
		return nil, nil, err
	}
	sccs, err := a.sccs()
	if err != nil {
		return nil, nil, fmt.Errorf("service account %s/%s: %w", meta.GetNamespace(), meta.GetName(), err)
	}
	var extra []velero.ResourceIdentifier
	for _, scc := range sccs {
		if GrantsTo(&scc, meta.GetNamespace(), meta.GetName()) {
			extra = append(extra, velero.ResourceIdentifier{GroupResource: SCCResource, Name: scc.Name})
		}
	}
	if len(extra) > 0 {
		a.log.WithFields(logrus.Fields{"namespace": meta.GetNamespace(), "name": meta.GetName()}).Infof("adding %d SecurityContextConstraints that name this service account", len(extra))
	}
	return item, extra, nil
}

// GrantsTo reports whether an SCC names the service account namespace/name, directly or through
// its namespace's service-account group.
func GrantsTo(scc *securityv1.SecurityContextConstraints, namespace, name string) bool {
	user := "system:serviceaccount:" + namespace + ":" + name
	for _, u := range scc.Users {
		if u == user {
			return true
		}
	}
	group := "system:serviceaccounts:" + namespace
	for _, g := range scc.Groups {
		if g == group {
			return true
		}
	}
	return false
}

func metaOf(item runtime.Unstructured) (metav1.Object, error) {
	u, ok := item.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("item of type %T has no object metadata", item)
	}
	if strings.TrimSpace(u.GetName()) == "" {
		return nil, fmt.Errorf("item has no name")
	}
	return u, nil
}
