package sidecar

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestRefusalsHoldAuthorizationDenialsBack(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	rbac := apierrors.NewForbidden(pods, "", errors.New(`User "system:serviceaccount:ferry-system:ferry-target" cannot list resource "pods" in API group "" in the namespace "shop"`))
	admission := apierrors.NewForbidden(pods, "x", errors.New("violates PodSecurity \"restricted:latest\": runAsNonRoot != true"))
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	type call struct {
		err  error
		at   time.Duration // after t0
		want bool
	}
	tests := []struct {
		name  string
		calls []call
	}{
		{"admission's 403 fails at once", []call{{admission, 0, true}}},
		{"an invalid object fails at once", []call{{apierrors.NewBadRequest("no"), 0, true}}},
		{"an unreachable API server is retried", []call{{errors.New("dial tcp: connection refused"), 0, false}}},
		{"RBAC's 403 is retried for the grace, then fails", []call{
			{rbac, 0, false}, {rbac, 30 * time.Second, false}, {rbac, ForbiddenGrace - time.Second, false}, {rbac, ForbiddenGrace, true},
		}},
		{"another error ends the run", []call{
			{rbac, 0, false}, {errors.New("connection refused"), 30 * time.Second, false}, {rbac, ForbiddenGrace, false},
		}},
		{"a refusal long after the last one starts a new run", []call{
			{rbac, 0, false}, {rbac, 3 * ForbiddenGrace, false}, {rbac, 3*ForbiddenGrace + 30*time.Second, false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Refusals
			for i, c := range tc.calls {
				assert.Equal(t, c.want, r.Permanent("pvc/shop/data", c.err, t0.Add(c.at)), "call %d", i)
			}
			assert.False(t, r.Permanent("pvc/other/data", rbac, t0.Add(10*ForbiddenGrace)), "runs are per operation")
		})
	}
}
