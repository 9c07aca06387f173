package view

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/troubleshoot"
)

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// backup builds a Backup; labels and the phase are options.
func backup(name string, migration string, started time.Time, opts ...func(*velerov1.Backup)) velerov1.Backup {
	b := velerov1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "velero", Name: name, Labels: map[string]string{}, CreationTimestamp: metav1.NewTime(started)}}
	if migration != "" {
		b.Labels[keys.Migration] = migration
	}
	b.Status.Phase = velerov1.BackupPhaseInProgress
	for _, o := range opts {
		o(&b)
	}
	return b
}

func schedule(s string) func(*velerov1.Backup) {
	return func(b *velerov1.Backup) { b.Labels[keys.VeleroScheduleName] = s }
}

func namespaces(ns ...string) func(*velerov1.Backup) {
	return func(b *velerov1.Backup) { b.Spec.IncludedNamespaces = ns }
}

func phase(p velerov1.BackupPhase, reason string) func(*velerov1.Backup) {
	return func(b *velerov1.Backup) { b.Status.Phase, b.Status.FailureReason = p, reason }
}

// claim builds a PVC with a transfer request by backup and, if st is not nil, its status.
func claim(ns, name, backupName string, st *operation.TransferStatus) corev1.PersistentVolumeClaim {
	p := corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}}}
	if backupName != "" {
		p.Annotations[keys.TransferID] = "uid-" + backupName
		p.Annotations[keys.TransferBackup] = backupName
		p.Annotations[keys.TransferType] = keys.MigrationStage
	}
	if st != nil {
		p.Annotations[keys.TransferStatus] = operation.Encode(st)
	}
	return p
}

func transfer(id string, ph operation.Phase, f func(*operation.TransferStatus)) *operation.TransferStatus {
	st := &operation.TransferStatus{Header: operation.Header{ID: id, Phase: ph}, Type: operation.Stage}
	if f != nil {
		f(st)
	}
	return st
}

func stream(ns, name, backupName string, st *operation.ImageCopyStatus) ImageStream {
	s := ImageStream{Namespace: ns, Name: name, Annotations: map[string]string{keys.ImageCopyID: "uid-" + backupName, keys.ImageCopyBackup: backupName}}
	if st != nil {
		s.Annotations[keys.ImageCopyStatus] = operation.Encode(st)
	}
	return s
}

func TestPVCItem(t *testing.T) {
	done := operation.NewTime(t0.Add(-time.Hour))
	tests := []struct {
		name string
		pvc  corev1.PersistentVolumeClaim
		want Item
		ok   bool
	}{
		{name: "no request, no status", pvc: claim("app", "data", "", nil), ok: false},
		{name: "request not answered yet", pvc: claim("app", "data", "s1", nil), ok: true,
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s1", Phase: "Pending"}, ID: "uid-s1", Type: "stage", Cancellable: true}},
		{name: "transferring: percent, rate and ETA", ok: true,
			pvc: claim("app", "data", "s1", transfer("uid-s1", operation.PhaseTransferring, func(s *operation.TransferStatus) {
				s.BytesDone, s.BytesTotal, s.RateBPS, s.Percent, s.Files, s.FilesSent, s.Attempts = 40, 100, 20, 40, 7, 3, 2
				s.Target, s.Endpoint = "app2/data", "NodePort 10.0.0.1:30000"
				s.Last = &operation.LastTransfer{ID: "uid-s0", Type: operation.Stage, Completed: done, BytesSent: 1000, FilesSent: 9}
			})),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s1", Phase: "Transferring", Percent: 40, RateBPS: 20, ETASeconds: 3, LastSuccess: &done.Time},
				ID: "uid-s1", Type: "stage", Target: "app2/data", Endpoint: "NodePort 10.0.0.1:30000", BytesDone: 40, BytesTotal: 100, Files: 7, FilesSent: 3, Attempts: 2,
				LastBytesSent: 1000, LastFilesSent: 9, LastType: "stage", Cancellable: true}},
		{name: "rate unknown: no ETA", ok: true,
			pvc:  claim("app", "data", "s1", transfer("uid-s1", operation.PhaseTransferring, func(s *operation.TransferStatus) { s.BytesTotal, s.Percent = 100, 101 })),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s1", Phase: "Transferring", Percent: 100}, ID: "uid-s1", Type: "stage", BytesTotal: 100, Cancellable: true}},
		{name: "completed is 100 % whatever rsync said last", ok: true,
			pvc: claim("app", "data", "s1", transfer("uid-s1", operation.PhaseCompleted, func(s *operation.TransferStatus) {
				s.Percent, s.Completed = 97, done
				s.Last = s.Succeeded()
			})),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s1", Phase: "Completed", Percent: 100, LastSuccess: &done.Time}, ID: "uid-s1", Type: "stage", LastType: "stage"}},
		{name: "failed: message and the troubleshooting fix", ok: true,
			pvc: claim("app", "data", "s1", transfer("uid-s1", operation.PhaseFailed, func(s *operation.TransferStatus) {
				s.Message = `storage class "gold" does not exist on the target cluster (it has: standard)`
			})),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s1", Phase: "Failed"}, ID: "uid-s1", Type: "stage",
				Message: `storage class "gold" does not exist on the target cluster (it has: standard)`, Failed: true, Fix: troubleshoot.Table[2].Fix}},
		{name: "verify pass running", ok: true,
			pvc: claim("app", "data", "f1", transfer("uid-f1", operation.PhaseTransferring, func(s *operation.TransferStatus) { s.Percent, s.Verifying = 100, 42.4 })),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "f1", Phase: "Transferring", Percent: 100, Verified: "verifying 42%"},
				ID: "uid-f1", Type: "stage", Cancellable: true}},
		{name: "verified identical", ok: true,
			pvc: claim("app", "data", "f1", transfer("uid-f1", operation.PhaseCompleted, func(s *operation.TransferStatus) {
				s.Verified = &operation.TransferVerification{Files: 1200, Bytes: 5 << 20}
			})),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "f1", Phase: "Completed", Percent: 100, Verified: "identical (1200 files)"},
				ID: "uid-f1", Type: "stage", VerifiedBytes: 5 << 20}},
		{name: "verify found differences: the first are named", ok: true,
			pvc: claim("app", "data", "f1", transfer("uid-f1", operation.PhaseFailed, func(s *operation.TransferStatus) {
				s.Message = "the target differs"
				s.Verified = &operation.TransferVerification{Files: 10, Bytes: 100, Mismatches: 2, First: []string{"a", "b/c"}}
			})),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "f1", Phase: "Failed", Verified: "2 differ"},
				ID: "uid-f1", Type: "stage", VerifiedBytes: 100, Differ: []string{"a", "b/c"}, Message: "the target differs", Failed: true, Fix: troubleshoot.Fix("the target differs")}},
		{name: "a newer request over an older status keeps the last success", ok: true,
			pvc: claim("app", "data", "s2", transfer("uid-s1", operation.PhaseCompleted, func(s *operation.TransferStatus) {
				s.Completed = done
				s.Last = s.Succeeded()
			})),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s2", Phase: "Pending", LastSuccess: &done.Time}, ID: "uid-s2", Type: "stage", LastType: "stage", Cancellable: true}},
		{name: "a status that is not JSON is a failure, not a crash", ok: true,
			pvc: func() corev1.PersistentVolumeClaim {
				p := claim("app", "data", "s1", nil)
				p.Annotations[keys.TransferStatus] = "{"
				return p
			}(),
			want: Item{Row: Row{Namespace: "app", Kind: KindPVC, Name: "data", Backup: "s1", Phase: "Failed"}, ID: "uid-s1", Type: "stage", Failed: true,
				Message: "annotation ferry.dev/transfer-status is not a ferry transfer status: unexpected end of JSON input"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := PVCItem(&tc.pvc, t0)
			require.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestImageStreamItem(t *testing.T) {
	done := operation.NewTime(t0)
	tests := []struct {
		name string
		in   ImageStream
		want Item
	}{
		{name: "copying", in: stream("app", "web", "s1", &operation.ImageCopyStatus{Header: operation.Header{ID: "uid-s1", Phase: operation.PhaseCopying}, Images: 4, ImagesDone: 1, BlobsSent: 3, BlobsSkipped: 2}),
			want: Item{Row: Row{Namespace: "app", Kind: KindImageStream, Name: "web", Backup: "s1", Phase: "Copying", Percent: 25}, ID: "uid-s1", Images: 4, ImagesDone: 1, BlobsSent: 3, BlobsSkipped: 2, Cancellable: true}},
		{name: "completed", in: stream("app", "web", "s1", &operation.ImageCopyStatus{Header: operation.Header{ID: "uid-s1", Phase: operation.PhaseCompleted, Completed: done}, Images: 2, ImagesDone: 2, BlobsSkipped: 5}),
			want: Item{Row: Row{Namespace: "app", Kind: KindImageStream, Name: "web", Backup: "s1", Phase: "Completed", Percent: 100, LastSuccess: &done.Time}, ID: "uid-s1", Images: 2, ImagesDone: 2, BlobsSkipped: 5}},
		{name: "failed images are summed up", in: func() ImageStream {
			st := &operation.ImageCopyStatus{Header: operation.Header{ID: "uid-s1", Phase: operation.PhaseFailed}, Images: 2, ImagesDone: 1}
			st.AddError("v1", "", "manifest unknown")
			return stream("app", "web", "s1", st)
		}(),
			want: Item{Row: Row{Namespace: "app", Kind: KindImageStream, Name: "web", Backup: "s1", Phase: "Failed", Percent: 50}, ID: "uid-s1", Images: 2, ImagesDone: 1,
				Failed: true, Message: "1 of 2 images not copied; tag v1: manifest unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ImageStreamItem(tc.in)
			require.True(t, ok)
			assert.Equal(t, tc.want, got)
		})
	}
}

// outline is a page reduced to "namespace/schedule: backup(phase)[items]" lines, so a test
// reads as the page's shape.
func outline(p Page) []string {
	var out []string
	for _, g := range p.Groups {
		line := g.Namespace + "/" + g.Schedule + ":"
		for _, b := range g.Backups {
			line += " " + b.Name + "(" + b.Phase + ")"
			if !b.Seen {
				line += "?"
			}
			for _, it := range b.Items {
				line += "[" + it.Name + "]"
			}
		}
		out = append(out, line)
	}
	return out
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		want []string
	}{
		{name: "nothing", want: nil},
		{name: "ordinary backups are left out",
			in: Input{Backups: []velerov1.Backup{backup("plain", "", t0), backup("odd", "weekly", t0)}}, want: nil},
		{name: "grouped by namespace and schedule, newest first",
			in: Input{
				Backups: []velerov1.Backup{
					backup("nightly-1", keys.MigrationStage, t0.Add(-2*time.Hour), schedule("nightly"), namespaces("app"), phase(velerov1.BackupPhaseCompleted, "")),
					backup("nightly-2", keys.MigrationStage, t0.Add(-time.Hour), schedule("nightly"), namespaces("app")),
					backup("final", keys.MigrationFinal, t0, namespaces("app", "db")),
				},
				PVCs: []corev1.PersistentVolumeClaim{
					claim("app", "data", "nightly-2", transfer("uid-nightly-2", operation.PhaseTransferring, nil)),
					claim("app", "logs", "nightly-2", nil),
					claim("db", "pg", "final", nil),
					claim("app", "plain", "", nil),
				},
			},
			want: []string{
				"app/: final(InProgress)",
				"app/nightly: nightly-2(InProgress)[data][logs] nightly-1(Completed)",
				"db/: final(InProgress)[pg]",
			}},
		{name: "a backup of every namespace is placed by its items",
			in: Input{
				Backups: []velerov1.Backup{backup("all", keys.MigrationStage, t0), backup("empty", keys.MigrationStage, t0)},
				PVCs:    []corev1.PersistentVolumeClaim{claim("app", "data", "all", nil)},
			},
			want: []string{"*/: empty(InProgress)", "app/: all(InProgress)[data]"}},
		{name: "items of a backup the viewer cannot read still show",
			in: Input{
				PVCs:         []corev1.PersistentVolumeClaim{claim("app", "data", "s1", transfer("uid-s1", operation.PhaseTransferring, nil))},
				ImageStreams: []ImageStream{stream("app", "web", "s1", nil)},
			},
			want: []string{"app/: s1(InProgress)?[data][web]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = t0
			assert.Equal(t, tc.want, outline(Build(tc.in)))
		})
	}
}

func TestBuildBackupFailureHasTheFix(t *testing.T) {
	reason := "the ferry-datamover sidecar is not running next to Velero (no Lease velero/ferry-datamover); add it"
	p := Build(Input{Now: t0, Backups: []velerov1.Backup{backup("s1", keys.MigrationStage, t0, namespaces("app"), phase(velerov1.BackupPhasePartiallyFailed, reason))}})
	require.Len(t, p.Groups, 1)
	b := p.Groups[0].Backups[0]
	assert.Equal(t, reason, b.Message)
	assert.Equal(t, troubleshoot.Table[0].Fix, b.Fix)
}

func TestBuildEvents(t *testing.T) {
	var evs []corev1.Event
	for i := range 7 {
		evs = append(evs, corev1.Event{
			InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "app", Name: "data"},
			Reason:         "R" + string(rune('0'+i)), Type: corev1.EventTypeNormal,
			LastTimestamp: metav1.NewTime(t0.Add(time.Duration(i) * time.Minute)),
		})
	}
	evs = append(evs, corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "app", Name: "data"}, Reason: "PodThing"})
	p := Build(Input{Now: t0, Events: evs, PVCs: []corev1.PersistentVolumeClaim{claim("app", "data", "s1", nil)}})
	require.Len(t, p.Groups, 1)
	var reasons []string
	for _, e := range p.Groups[0].Backups[0].Items[0].Events {
		reasons = append(reasons, e.Reason)
	}
	assert.Equal(t, []string{"R6", "R5", "R4", "R3", "R2"}, reasons, "the newest five, newest first; a Pod's Events are not the PVC's")
}

func TestRows(t *testing.T) {
	p := Build(Input{Now: t0, PVCs: []corev1.PersistentVolumeClaim{claim("app", "b", "s1", nil), claim("app", "a", "s1", nil)}})
	rows := Rows(p)
	require.Len(t, rows, 2)
	assert.Equal(t, Row{Namespace: "app", Kind: KindPVC, Name: "a", Backup: "s1", Phase: "Pending"}, rows[0])
}
