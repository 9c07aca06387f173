// Package view turns what the collector saw in a cluster (Backups, PVCs, image streams, Events)
// into what the dashboard shows: migrations grouped by namespace and schedule, and one row per
// PVC or image stream with its progress, failure and fix. Pure functions of their input, so the
// page, and a later `ferry-datamover status`, read the same rows.
package view

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/troubleshoot"
)

// Input is one snapshot of what the viewer may see.
type Input struct {
	Backups []velerov1.Backup
	PVCs    []corev1.PersistentVolumeClaim
	// ImageStreams carry only what the view reads of a stream: its name and annotations.
	ImageStreams []ImageStream
	Events       []corev1.Event
	// Notices say what the viewer may not see (or what the cluster does not serve).
	Notices []string
	Now     time.Time
}

// ImageStream is the part of an image.openshift.io ImageStream the view reads.
type ImageStream struct {
	Namespace, Name string
	Annotations     map[string]string
}

// Kinds of rows.
const (
	KindPVC         = "PVC"
	KindImageStream = "ImageStream"
)

// AllNamespaces names the group of a backup of every namespace that has no item yet.
const AllNamespaces = "*"

// Page is everything the dashboard shows.
type Page struct {
	Generated time.Time `json:"generated"`
	Notices   []string  `json:"notices,omitempty"`
	Groups    []Group   `json:"groups"`
}

// Group is the migrations of one namespace by one schedule ("" for backups made by hand).
type Group struct {
	Namespace string    `json:"namespace"`
	Schedule  string    `json:"schedule,omitempty"`
	Backups   []Backup  `json:"backups"`
	newest    time.Time // orders groups: the busiest first
}

// Backup is one ferry migration backup and the items it asked to move in the group's namespace.
type Backup struct {
	Name string `json:"name"`
	// Type is stage or final.
	Type  string    `json:"type"`
	Phase string    `json:"phase"`
	Time  time.Time `json:"time"`
	// Seen is false for a backup known only from its items' annotations (the viewer may not
	// read Velero's namespace).
	Seen    bool   `json:"seen"`
	Message string `json:"message,omitempty"`
	Fix     string `json:"fix,omitempty"`
	Items   []Item `json:"items,omitempty"`
}

// Row is the one-line summary of a PVC transfer or an image copy, for a table or a CLI.
type Row struct {
	Namespace string `json:"namespace"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Backup    string `json:"backup,omitempty"`
	Phase     string `json:"phase"`
	// Percent is 0–100.
	Percent float64 `json:"percent"`
	RateBPS int64   `json:"rate,omitempty"`
	// ETASeconds is 0 when unknown.
	ETASeconds int64 `json:"eta,omitempty"`
	// LastSuccess is when the most recent transfer of this item completed.
	LastSuccess *time.Time `json:"lastSuccess,omitempty"`
	// Verified is what the PVC transfer's verify pass found, in short ("" when it has none):
	// "verifying 40%", "identical (1200 files)" or "3 differ".
	Verified string `json:"verified,omitempty"`
}

// Item is a row with everything the page shows under it.
type Item struct {
	Row
	// ID is the current request's; Cancel names it.
	ID         string `json:"id"`
	Type       string `json:"type,omitempty"`
	Target     string `json:"target,omitempty"`
	Endpoint   string `json:"endpoint,omitempty"`
	BytesDone  int64  `json:"bytesDone,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
	Files      int64  `json:"files,omitempty"`
	FilesSent  int64  `json:"filesSent,omitempty"`
	Attempts   int    `json:"attempts,omitempty"`
	// VerifiedBytes is what the verify pass read on each side; Differ names the first paths
	// that differ.
	VerifiedBytes int64    `json:"verifiedBytes,omitempty"`
	Differ        []string `json:"differ,omitempty"`
	// LastBytesSent and LastFilesSent are what the last completed transfer moved.
	LastBytesSent int64  `json:"lastBytesSent,omitempty"`
	LastFilesSent int64  `json:"lastFilesSent,omitempty"`
	LastType      string `json:"lastType,omitempty"`
	Images        int    `json:"images,omitempty"`
	ImagesDone    int    `json:"imagesDone,omitempty"`
	BlobsSent     int    `json:"blobsSent,omitempty"`
	BlobsSkipped  int    `json:"blobsSkipped,omitempty"`
	Message       string `json:"message,omitempty"`
	// Failed is set for a Failed, Refused or Cancelled item; Fix is the troubleshooting text.
	Failed bool    `json:"failed,omitempty"`
	Fix    string  `json:"fix,omitempty"`
	Events []Event `json:"events,omitempty"`
	// Cancellable: the operation can still be stopped (the server adds whether the viewer may).
	Cancellable bool `json:"cancellable,omitempty"`
	CanCancel   bool `json:"canCancel,omitempty"`
}

// Event is one Event of an item, newest first.
type Event struct {
	Type    string    `json:"type"`
	Reason  string    `json:"reason"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
	Count   int32     `json:"count,omitempty"`
}

// maxEvents keeps a busy PVC's Events from pushing everything else off the page.
const maxEvents = 5

// Build makes the page from a snapshot.
func Build(in Input) Page {
	backups := map[string]*velerov1.Backup{}
	for i := range in.Backups {
		b := &in.Backups[i]
		if MigrationType(b) != "" {
			backups[b.Name] = b
		}
	}
	events := eventsByPVC(in.Events)
	// items by backup name and namespace
	type key struct{ backup, namespace string }
	items := map[key][]Item{}
	for _, p := range in.PVCs {
		it, ok := PVCItem(&p, in.Now)
		if !ok {
			continue
		}
		it.Events = events[p.Namespace+"/"+p.Name]
		items[key{it.Backup, it.Namespace}] = append(items[key{it.Backup, it.Namespace}], it)
	}
	for _, s := range in.ImageStreams {
		it, ok := ImageStreamItem(s)
		if !ok {
			continue
		}
		items[key{it.Backup, it.Namespace}] = append(items[key{it.Backup, it.Namespace}], it)
	}

	type gkey struct{ namespace, schedule string }
	groups := map[gkey]*Group{}
	add := func(ns, schedule string, b Backup) {
		g := groups[gkey{ns, schedule}]
		if g == nil {
			g = &Group{Namespace: ns, Schedule: schedule}
			groups[gkey{ns, schedule}] = g
		}
		g.Backups = append(g.Backups, b)
		if b.Time.After(g.newest) {
			g.newest = b.Time
		}
	}
	placed := map[key]bool{}
	for _, b := range backups {
		base := backupOf(b)
		namespaces := map[string]bool{}
		for _, ns := range b.Spec.IncludedNamespaces {
			if ns != "*" && ns != "" {
				namespaces[ns] = true
			}
		}
		for k := range items {
			if k.backup == b.Name {
				namespaces[k.namespace] = true
			}
		}
		if len(namespaces) == 0 {
			namespaces[AllNamespaces] = true
		}
		for ns := range namespaces {
			bb := base
			bb.Items = sortedItems(items[key{b.Name, ns}])
			placed[key{b.Name, ns}] = true
			add(ns, b.Labels[keys.VeleroScheduleName], bb)
		}
	}
	// Items of backups the viewer cannot read (or that are gone): a backup made from what
	// the items say.
	for k, its := range items {
		if placed[k] {
			continue
		}
		b := Backup{Name: k.backup, Phase: phaseOfItems(its), Items: sortedItems(its)}
		for _, it := range its {
			if it.Type != "" {
				b.Type = it.Type
			}
		}
		add(k.namespace, "", b)
	}

	page := Page{Generated: in.Now, Notices: in.Notices, Groups: []Group{}}
	for _, g := range groups {
		slices.SortFunc(g.Backups, func(a, b Backup) int {
			if c := b.Time.Compare(a.Time); c != 0 {
				return c
			}
			return strings.Compare(b.Name, a.Name)
		})
		page.Groups = append(page.Groups, *g)
	}
	slices.SortFunc(page.Groups, func(a, b Group) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Schedule, b.Schedule))
	})
	return page
}

// MigrationType is "stage" or "final" for a ferry migration backup, "" for any other backup.
func MigrationType(b *velerov1.Backup) string {
	switch v := b.Labels[keys.Migration]; v {
	case keys.MigrationStage, keys.MigrationFinal:
		return v
	}
	return ""
}

func backupOf(b *velerov1.Backup) Backup {
	out := Backup{Name: b.Name, Type: MigrationType(b), Phase: string(b.Status.Phase), Time: b.CreationTimestamp.Time, Seen: true}
	if b.Status.StartTimestamp != nil {
		out.Time = b.Status.StartTimestamp.Time
	}
	if out.Phase == "" {
		out.Phase = string(velerov1.BackupPhaseNew)
	}
	if b.Status.FailureReason != "" {
		out.Message = b.Status.FailureReason
		out.Fix = troubleshoot.Fix(out.Message)
	}
	return out
}

// PVCItem reads a PVC's transfer status; false when the PVC has none and no request.
func PVCItem(p *corev1.PersistentVolumeClaim, now time.Time) (Item, bool) {
	ann := p.Annotations
	st, err := operation.ParseTransferStatus(ann)
	if st == nil && err == nil && ann[keys.TransferID] == "" {
		return Item{}, false
	}
	it := Item{Row: Row{Namespace: p.Namespace, Kind: KindPVC, Name: p.Name, Backup: ann[keys.TransferBackup]}}
	it.ID = ann[keys.TransferID]
	it.Type = ann[keys.TransferType]
	if err != nil {
		it.Phase, it.Message, it.Failed = string(operation.PhaseFailed), err.Error(), true
		return it, true
	}
	if st == nil || (it.ID != "" && st.ID != it.ID) {
		// A request the sidecar has not answered yet (the status, if any, is an older one's).
		it.Phase = string(operation.PhasePending)
		it.Cancellable = it.ID != ""
		if st != nil {
			it.setLast(st.Last)
		}
		return it, true
	}
	it.ID = st.ID
	if st.Type != "" {
		it.Type = string(st.Type)
	}
	it.Phase, it.Message = string(st.Phase), st.Message
	it.Target, it.Endpoint = st.Target, st.Endpoint
	it.BytesDone, it.BytesTotal, it.Files, it.FilesSent = st.BytesDone, st.BytesTotal, st.Files, st.FilesSent
	it.Attempts, it.RateBPS = st.Attempts, st.RateBPS
	it.Percent = clampPercent(st.Percent)
	if st.Phase == operation.PhaseCompleted {
		it.Percent = 100
	}
	it.ETASeconds = int64(st.ETA() / time.Second)
	it.setVerified(st)
	it.setLast(st.Last)
	it.fail(st.Phase)
	it.Cancellable = !st.Phase.Terminal()
	return it, true
}

// setVerified says what the verify pass found: while it runs, its share; after, whether the
// target matched. A result from an earlier attempt stays until the next pass has one.
func (it *Item) setVerified(st *operation.TransferStatus) {
	v := st.Verified
	switch {
	case st.Verifying > 0 && !st.Phase.Terminal():
		it.Verified = fmt.Sprintf("verifying %.0f%%", clampPercent(st.Verifying))
	case v == nil:
		return
	case v.Mismatches > 0:
		it.Verified = fmt.Sprintf("%d differ", v.Mismatches)
		it.Differ = v.First
	default:
		it.Verified = fmt.Sprintf("identical (%d files)", v.Files)
	}
	if v != nil {
		it.VerifiedBytes = v.Bytes
	}
}

func (it *Item) setLast(l *operation.LastTransfer) {
	if l == nil {
		return
	}
	if l.Completed != nil {
		t := l.Completed.Time
		it.LastSuccess = &t
	}
	it.LastBytesSent, it.LastFilesSent, it.LastType = l.BytesSent, l.FilesSent, string(l.Type)
}

func (it *Item) fail(p operation.Phase) {
	switch p {
	case operation.PhaseFailed, operation.PhaseRefused, operation.PhaseCancelled:
		it.Failed = true
		it.Fix = troubleshoot.Fix(it.Message)
	}
}

// ImageStreamItem reads an image stream's copy status; false when it has none and no request.
func ImageStreamItem(s ImageStream) (Item, bool) {
	ann := s.Annotations
	st, err := operation.ParseImageCopyStatus(ann)
	if st == nil && err == nil && ann[keys.ImageCopyID] == "" {
		return Item{}, false
	}
	it := Item{Row: Row{Namespace: s.Namespace, Kind: KindImageStream, Name: s.Name, Backup: ann[keys.ImageCopyBackup]}}
	it.ID = ann[keys.ImageCopyID]
	if err != nil {
		it.Phase, it.Message, it.Failed = string(operation.PhaseFailed), err.Error(), true
		return it, true
	}
	if st == nil || (it.ID != "" && st.ID != it.ID) {
		it.Phase = string(operation.PhasePending)
		it.Cancellable = it.ID != ""
		return it, true
	}
	it.ID = st.ID
	it.Phase, it.Message, it.Target = string(st.Phase), st.Message, st.Target
	it.Images, it.ImagesDone, it.BlobsSent, it.BlobsSkipped = st.Images, st.ImagesDone, st.BlobsSent, st.BlobsSkipped
	if st.Images > 0 {
		it.Percent = clampPercent(100 * float64(st.ImagesDone) / float64(st.Images))
	}
	if st.Phase == operation.PhaseCompleted {
		it.Percent = 100
		if st.Completed != nil {
			t := st.Completed.Time
			it.LastSuccess = &t
		}
	}
	if st.FailedImages > 0 && st.Message == "" {
		it.Message = st.ErrorSummary()
	}
	it.fail(st.Phase)
	it.Cancellable = !st.Phase.Terminal()
	return it, true
}

func clampPercent(p float64) float64 { return max(0, min(100, p)) }

// phaseOfItems sums up the items of a backup the viewer cannot read, in Velero's words: in
// progress while any item is, else failed if any failed.
func phaseOfItems(its []Item) string {
	failed := false
	for _, it := range its {
		if !operation.Phase(it.Phase).Terminal() {
			return string(velerov1.BackupPhaseInProgress)
		}
		failed = failed || it.Failed
	}
	if failed {
		return string(velerov1.BackupPhaseFailed)
	}
	return string(velerov1.BackupPhaseCompleted)
}

// sortedItems puts volumes before image streams, each by name.
func sortedItems(its []Item) []Item {
	slices.SortFunc(its, func(a, b Item) int {
		return cmp.Or(strings.Compare(b.Kind, a.Kind), strings.Compare(a.Name, b.Name))
	})
	return its
}

// eventsByPVC keys the newest few Events of each PVC by "namespace/name".
func eventsByPVC(evs []corev1.Event) map[string][]Event {
	out := map[string][]Event{}
	for _, e := range evs {
		if e.InvolvedObject.Kind != "PersistentVolumeClaim" {
			continue
		}
		k := e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
		out[k] = append(out[k], Event{Type: e.Type, Reason: e.Reason, Message: e.Message, Time: eventTime(&e), Count: e.Count})
	}
	for k, list := range out {
		slices.SortFunc(list, func(a, b Event) int { return b.Time.Compare(a.Time) })
		if len(list) > maxEvents {
			list = list[:maxEvents]
		}
		out[k] = list
	}
	return out
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// Rows flattens a page into its rows, for a CLI.
func Rows(p Page) []Row {
	var out []Row
	for _, g := range p.Groups {
		for _, b := range g.Backups {
			for _, it := range b.Items {
				out = append(out, it.Row)
			}
		}
	}
	return out
}
