package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestServiceAction(t *testing.T) {
	svc := func(typ corev1.ServiceType, ips ...string) *corev1.Service {
		return &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"},
			Spec:       corev1.ServiceSpec{Type: typ, ExternalIPs: ips, ClusterIP: "172.30.0.10", Ports: []corev1.ServicePort{{Port: 80}}},
		}
	}
	migrated := func(s *corev1.Service) *corev1.Service {
		s.Annotations = map[string]string{keys.BackupMigration: "final"}
		return s
	}
	tests := []struct {
		name string
		in   *corev1.Service
		want []string
	}{
		{"LoadBalancer external IPs dropped", svc(corev1.ServiceTypeLoadBalancer, "192.0.2.10"), nil},
		{"ordinary restore: ClusterIP external IPs are the user's", svc(corev1.ServiceTypeClusterIP, "192.0.2.10"), []string{"192.0.2.10"}},
		{"ordinary restore: NodePort external IPs are the user's", svc(corev1.ServiceTypeNodePort, "192.0.2.10"), []string{"192.0.2.10"}},
		{"migration: ClusterIP external IPs dropped", migrated(svc(corev1.ServiceTypeClusterIP, "192.0.2.10")), nil},
		{"migration: NodePort external IPs dropped", migrated(svc(corev1.ServiceTypeNodePort, "192.0.2.10", "192.0.2.11")), nil},
		{"migration: LoadBalancer external IPs dropped", migrated(svc(corev1.ServiceTypeLoadBalancer, "192.0.2.10")), nil},
		{"LoadBalancer without external IPs", svc(corev1.ServiceTypeLoadBalancer), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			o, err := NewServiceAction(log).Execute(input(t, tc.in, restoreWith()))
			require.NoError(t, err)
			var got corev1.Service
			testutil.FromUnstructured(t, out(t, o), &got)
			assert.Equal(t, tc.want, got.Spec.ExternalIPs)
			assert.Equal(t, "172.30.0.10", got.Spec.ClusterIP, "clusterIP is Velero's business")
			assert.NotContains(t, got.Annotations, keys.BackupMigration, "ferry's stamp does not reach the target")
		})
	}
}
