package restoreitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
)

func TestStatefulSetAction(t *testing.T) {
	standard, fast := "standard", "fast"
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	sts := func(record map[string]operation.ClaimTemplate, rawRecord string) *appsv1.StatefulSet {
		s := &appsv1.StatefulSet{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db", Annotations: map[string]string{"keep": "me"}},
		}
		for _, name := range []string{"data", "shared"} {
			s.Spec.VolumeClaimTemplates = append(s.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: &standard, AccessModes: rwo},
			})
		}
		switch {
		case record != nil:
			s.Annotations[keys.ClaimTemplates] = operation.EncodeClaimTemplates(record)
		case rawRecord != "":
			s.Annotations[keys.ClaimTemplates] = rawRecord
		}
		return s
	}
	tests := []struct {
		name    string
		in      *appsv1.StatefulSet
		want    map[string]corev1.PersistentVolumeClaimSpec
		wantErr string
	}{
		{
			name: "no record (ordinary backup): templates as they were", in: sts(nil, ""),
			want: map[string]corev1.PersistentVolumeClaimSpec{"data": {StorageClassName: &standard, AccessModes: rwo}, "shared": {StorageClassName: &standard, AccessModes: rwo}},
		},
		{
			name: "recorded templates get the copies' class and modes; moved ones keep the source's",
			in:   sts(map[string]operation.ClaimTemplate{"data": {StorageClass: &fast, AccessModes: rwx}}, ""),
			want: map[string]corev1.PersistentVolumeClaimSpec{"data": {StorageClassName: &fast, AccessModes: rwx}, "shared": {StorageClassName: &standard, AccessModes: rwo}},
		},
		{
			name: "no class recorded: the target's default class",
			in:   sts(map[string]operation.ClaimTemplate{"data": {AccessModes: rwo}}, ""),
			want: map[string]corev1.PersistentVolumeClaimSpec{"data": {AccessModes: rwo}, "shared": {StorageClassName: &standard, AccessModes: rwo}},
		},
		{name: "a damaged record fails naming the StatefulSet", in: sts(nil, "{not json"), wantErr: "StatefulSet app/db: annotation " + keys.ClaimTemplates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log, _ := testutil.NewLogger()
			o, err := NewStatefulSetAction(log).Execute(input(t, tc.in, restoreWith()))
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			var got appsv1.StatefulSet
			testutil.FromUnstructured(t, out(t, o), &got)
			specs := map[string]corev1.PersistentVolumeClaimSpec{}
			for _, tmpl := range got.Spec.VolumeClaimTemplates {
				specs[tmpl.Name] = tmpl.Spec
			}
			assert.Equal(t, tc.want, specs)
			assert.Equal(t, map[string]string{"keep": "me"}, got.Annotations, "ferry's record does not reach the target; other annotations stay")
		})
	}
}
