package backupitemaction

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	"github.com/vmware-tanzu/velero/pkg/builder"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/testutil"
)

// statefulSet is app/db with claim templates of class "standard", RWO.
func statefulSet(replicas int32, templates ...string) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "db"},
		Spec:       appsv1.StatefulSetSpec{Replicas: &replicas},
	}
	class := "standard"
	for _, name := range templates {
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: &class,
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
		})
	}
	return sts
}

// claim is the StatefulSet's PVC of template tmpl, ordinal i, bound to PV pv.
func claim(tmpl string, i int, pv string, ann ...string) *corev1.PersistentVolumeClaim {
	name := tmpl + "-db-" + string(rune('0'+i))
	pvc := builder.ForPersistentVolumeClaim("app", name).ObjectMeta(builder.WithAnnotations(ann...)).
		VolumeName(pv).StorageClass("standard").Phase(corev1.ClaimBound).Result()
	pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	return pvc
}

func volume(name string, nfs bool) *corev1.PersistentVolume {
	pv := builder.ForPersistentVolume(name).StorageClass("standard").Result()
	if nfs {
		pv.Spec.NFS = &corev1.NFSVolumeSource{Server: "nfs.example", Path: "/exports/" + name}
	} else {
		pv.Spec.HostPath = &corev1.HostPathVolumeSource{Path: "/tmp/" + name}
	}
	return pv
}

func TestStatefulSetActionExecute(t *testing.T) {
	fast, gold := "fast", "gold"
	rwx := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	rwo := []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	mapping := map[string]string{"storageClassMapping": "standard=fast", "accessModeMapping": "RWO=RWX"}
	tests := []struct {
		name    string
		sts     *appsv1.StatefulSet
		objects []runtimeObject
		backup  *velerov1.Backup
		config  map[string]string
		want    map[string]operation.ClaimTemplate // nil: no annotation
		wantErr string
	}{
		{name: "ordinary backup: untouched", sts: statefulSet(1, "data"), backup: ordinaryBackup(), config: mapping},
		{name: "no claim templates: untouched", sts: statefulSet(1), backup: migrationBackup("stage"), config: mapping},
		{
			name: "no PVC yet: as one made from the template would be copied", sts: statefulSet(2, "data"),
			backup: migrationBackup("stage"), config: mapping,
			want: map[string]operation.ClaimTemplate{"data": {StorageClass: &fast, AccessModes: rwx}},
		},
		{
			name: "the first existing PVC's own choice wins (ordinal 0 missing, 1 annotated)", sts: statefulSet(3, "data"),
			objects: []runtimeObject{claim("data", 1, "pv-1", keys.StorageClass, "gold"), volume("pv-1", false)},
			backup:  migrationBackup("final"), config: mapping,
			want: map[string]operation.ClaimTemplate{"data": {StorageClass: &gold, AccessModes: rwx}},
		},
		{
			name: "no mapping: the source's class and modes", sts: statefulSet(1, "data"),
			objects: []runtimeObject{claim("data", 0, "pv-0"), volume("pv-0", false)},
			backup:  migrationBackup("stage"),
			want:    map[string]operation.ClaimTemplate{"data": {StorageClass: ptrTo("standard"), AccessModes: rwo}},
		},
		{
			name: "moved PVCs keep the source's template; copied ones are recorded", sts: statefulSet(1, "shared", "data"),
			objects: []runtimeObject{claim("shared", 0, "pv-s", keys.PVAction, keys.PVActionMove), volume("pv-s", true), claim("data", 0, "pv-0"), volume("pv-0", false)},
			backup:  migrationBackup("final"), config: mapping,
			want: map[string]operation.ClaimTemplate{"data": {StorageClass: &fast, AccessModes: rwx}},
		},
		{
			name: "a bad annotation on the PVC fails naming the template", sts: statefulSet(1, "data"),
			objects: []runtimeObject{claim("data", 0, "pv-0", keys.AccessModes, "RWZ"), volume("pv-0", false)},
			backup:  migrationBackup("stage"),
			wantErr: "StatefulSet app/db, claim template data: PVC app/data-db-0: annotation " + keys.AccessModes,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cluster := testutil.NewCluster(testutil.WithObjects(tc.objects...))
			log, _ := testutil.NewLogger()
			a := NewStatefulSetAction(log, cluster.Clients, configOf(t, tc.config))
			got, extra, err := a.Execute(testutil.Unstructured(t, tc.sts), tc.backup)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Empty(t, extra)
			recorded, err := operation.ParseClaimTemplates(got.(*unstructured.Unstructured).GetAnnotations())
			require.NoError(t, err)
			assert.Equal(t, tc.want, recorded)
		})
	}
}

func ptrTo[T any](v T) *T { return &v }
