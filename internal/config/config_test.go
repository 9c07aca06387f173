package config

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]string
		check   func(t *testing.T, c *Config)
		wantErr []string
	}{
		{
			name: "empty data gives defaults",
			data: nil,
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, Defaults(), c)
				assert.Equal(t, "copy", c.DefaultPVAction)
				assert.Equal(t, 4, c.Concurrency)
				assert.Equal(t, EndpointLoadBalancer, c.EndpointType)
			},
		},
		{
			name: "every kind of value",
			data: map[string]string{
				"targetKubeconfigSecret": "target",
				"defaultPVAction":        "move",
				"moveDrivers":            "nfs.csi.k8s.io, efs.csi.aws.com",
				"storageClassMapping":    "gp2=gp3\n*=standard\n=default-class",
				"accessModeMapping":      "RWO=ReadWriteMany",
				"namespaceMapping":       "app=app-new",
				"endpointType":           "Route",
				"concurrency":            "8",
				"bwlimitKBps":            "0",
				"verify":                 "true",
				"transferMemory":         "1Gi",
				"quiesceScope":           "namespace",
			},
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, "target", c.TargetKubeconfigSecret)
				assert.Equal(t, "move", c.DefaultPVAction)
				assert.Equal(t, []string{"nfs.csi.k8s.io", "efs.csi.aws.com"}, c.MoveDrivers)
				assert.Equal(t, map[string]string{"gp2": "gp3", "*": "standard", "": "default-class"}, c.StorageClassMapping)
				assert.Equal(t, corev1.ReadWriteMany, c.AccessModeMapping[corev1.ReadWriteOnce])
				assert.Equal(t, "app-new", c.NamespaceMapping["app"])
				assert.Equal(t, EndpointRoute, c.EndpointType)
				assert.Equal(t, 8, c.Concurrency)
				assert.True(t, c.Verify)
				assert.Equal(t, resource.MustParse("1Gi"), c.TransferMemory)
				assert.Equal(t, "namespace", c.QuiesceScope)
			},
		},
		{
			name:    "unknown key (a typo) is an error naming it",
			data:    map[string]string{"concurency": "8"},
			wantErr: []string{`unknown key "concurency"`, "concurrency"},
		},
		{
			name: "every bad value is reported",
			data: map[string]string{
				"defaultPVAction":     "swing",
				"concurrency":         "0",
				"verify":              "yes please",
				"endpointType":        "Ingress",
				"accessModeMapping":   "RWO=RWZ",
				"storageClassMapping": "gp2",
				"namespaceMapping":    "=b",
				"transferCPU":         "lots",
				"quiesceScope":        "cluster",
			},
			wantErr: []string{
				`key "defaultPVAction"`, `key "concurrency"`, `key "verify"`, `key "endpointType"`,
				`unknown access mode "RWZ"`, `"gp2" is not of the form`, `key "namespaceMapping"`, `key "transferCPU"`,
				`key "quiesceScope"`,
			},
		},
		{
			name: "placement and limits",
			data: map[string]string{
				"transferNodeSelector": "node-role.kubernetes.io/infra=,topology.kubernetes.io/zone=a",
				"transferTolerations":  "- key: node-role.kubernetes.io/infra\n  operator: Exists\n  effect: NoSchedule",
				"transferAffinity":     `{"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":10,"podAffinityTerm":{"topologyKey":"kubernetes.io/hostname"}}]}}`,
				"transferCPULimit":     "2",
				"transferMemoryLimit":  "1Gi",
			},
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, map[string]string{"node-role.kubernetes.io/infra": "", "topology.kubernetes.io/zone": "a"}, c.TransferNodeSelector)
				assert.Equal(t, []corev1.Toleration{{Key: "node-role.kubernetes.io/infra", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, c.TransferTolerations)
				require.NotNil(t, c.TransferAffinity.PodAntiAffinity)
				assert.Equal(t, int32(10), c.TransferAffinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].Weight)
				assert.Equal(t, resource.MustParse("2"), c.TransferCPULimit)
				assert.Equal(t, resource.MustParse("1Gi"), c.TransferMemoryLimit)
			},
		},
		{
			name: "bad placement and limits are reported, naming the key",
			data: map[string]string{
				"transferNodeSelector": "zone=a b",
				"transferTolerations":  "- key: x\n  operator: Maybe",
				"transferAffinity":     "nodeAffinty: {}",
				"transferMemoryLimit":  "64Mi",
			},
			wantErr: []string{
				`key "transferNodeSelector"`, `label zone=a b`,
				`key "transferTolerations"`, `operator "Maybe"`,
				`key "transferAffinity"`, `unknown field "nodeAffinty"`,
				`key "transferMemoryLimit": 64Mi is below the request 256Mi`,
			},
		},
		{
			name:    "a source mapped twice is an error",
			data:    map[string]string{"storageClassMapping": "a=b,a=c"},
			wantErr: []string{`source "a" is mapped twice`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(tc.data)
			if len(tc.wantErr) > 0 {
				require.Error(t, err)
				for _, w := range tc.wantErr {
					assert.Contains(t, err.Error(), w)
				}
				assert.Nil(t, c)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestTargetStorageClass(t *testing.T) {
	c, err := Parse(map[string]string{"storageClassMapping": "gp2=gp3,*=standard,=fallback"})
	require.NoError(t, err)
	tests := []struct {
		source, want string
		ok           bool
	}{
		{"gp2", "gp3", true},
		{"other", "standard", true},
		{"", "fallback", true},
	}
	for _, tc := range tests {
		got, ok := c.TargetStorageClass(tc.source)
		assert.Equal(t, tc.want, got, tc.source)
		assert.Equal(t, tc.ok, ok, tc.source)
	}
	got, ok := Defaults().TargetStorageClass("gp2")
	assert.Equal(t, "gp2", got)
	assert.False(t, ok)
}

func TestTargetAccessModes(t *testing.T) {
	c, err := Parse(map[string]string{"accessModeMapping": "RWO=RWX"})
	require.NoError(t, err)
	got := c.TargetAccessModes([]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany})
	assert.Equal(t, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}, got)
}

func TestParseAccessModes(t *testing.T) {
	m, err := ParseAccessModes("RWO, ReadOnlyMany")
	require.NoError(t, err)
	assert.Equal(t, "ReadWriteOnce,ReadOnlyMany", FormatAccessModes(m))
	_, err = ParseAccessModes("")
	assert.Error(t, err)
	_, err = ParseAccessModes("ReadWriteSometimes")
	assert.ErrorContains(t, err, "ReadWriteSometimes")
}

func TestLoad(t *testing.T) {
	ctx := context.Background()
	client := fake.NewSimpleClientset()
	c, err := Load(ctx, client, "velero")
	require.NoError(t, err)
	assert.Equal(t, Defaults(), c, "a missing ConfigMap means defaults")

	client = fake.NewSimpleClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: ConfigMapName},
		Data:       map[string]string{"concurrency": "two"},
	})
	_, err = Load(ctx, client, "velero")
	assert.ErrorContains(t, err, "velero/ferry-config")
	assert.ErrorContains(t, err, `key "concurrency"`)
}
