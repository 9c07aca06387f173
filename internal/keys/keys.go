// Package keys is the one table of every label and annotation key ferry reads or writes.
// The README's key table is this file in prose; change both together.
//
// Ferry's plugins and its data-mover sidecar never call each other: they talk through these
// keys on cluster objects. Requests are signed (a key only Velero and admins can read), so an
// admin moves a PVC without a backup with `ferry-datamover request`, never by writing keys.
package keys

const prefix = "ferry.dev/"

// Labels on Velero objects, set by the user.
const (
	// Migration marks a Backup (or a Schedule's template) as a ferry migration: "stage" or "final".
	// Without it a backup is an ordinary Velero backup and ferry only adds cheap annotations.
	Migration = prefix + "migration"
)

// Values of Migration (and of TransferType).
const (
	MigrationStage = "stage"
	MigrationFinal = "final"
)

// Annotations on a Backup, set by the user.
const (
	// AllowOverwrite ("true") on a Backup lets its transfers and image copies fill target PVCs
	// and image streams that hold data ferry did not write. Overrides ferry-config allowOverwrite.
	AllowOverwrite = prefix + "allow-overwrite"
	// NamespaceMapping maps source to target namespaces for the data a backup moves, in the form
	// of `velero restore create --namespace-mappings`: "src1:dst1,src2:dst2". Use the same
	// mapping for the restore. Overrides the config map's namespaceMapping.
	NamespaceMapping = prefix + "namespace-mapping"
	// QuiesceScope is what a final backup stops on the source: "volumes" (the workloads that
	// mount a migrated PVC) or "namespace" (every workload of each namespace with a migrated
	// PVC). Overrides ferry-config quiesceScope.
	QuiesceScope = prefix + "quiesce-scope"
	// Verify (below, a per-PVC key too) on a Backup decides for all its transfers, stages
	// included: "true" verifies each copy, "false" none.
)

// Values of QuiesceScope (and of TransferQuiesceScope).
const (
	QuiesceScopeVolumes   = "volumes"
	QuiesceScopeNamespace = "namespace"
)

// Per-PVC choices, set by the user on the live source PVC (each overrides the config map).
const (
	// PVAction is "copy" (transfer the data into a new target PVC) or "move" (carry the PV
	// definition over; the storage must be reachable from the target, e.g. NFS). In a backup
	// the resolved decision is written under the same key on the backed-up PVC and PV.
	PVAction = prefix + "pv-action"
	// StorageClass is the target storage class for a copied PVC.
	StorageClass = prefix + "storage-class"
	// AccessModes is the target access modes for a copied PVC, comma-separated.
	AccessModes = prefix + "access-modes"
	// Verify ("true") makes this PVC's finals verify their copy: after it, every file compared
	// by content on both sides, a difference fails the transfer. Overrides ferry-config verify;
	// a Backup's overrides it (and may ask a stage to verify).
	Verify = prefix + "verify"
)

// Values of PVAction.
const (
	PVActionCopy = "copy"
	PVActionMove = "move"
)

// The transfer request: annotations on a live source PVC asking the sidecar to copy it.
// The PVC backup action writes them, or `ferry-datamover request pvc` for an admin; the sidecar
// refuses a request whose TransferSignature does not check out (e.g. one written by hand).
const (
	// TransferID identifies one request. A new value starts a new transfer; the sidecar does
	// nothing for an ID whose status is already terminal. Backups use the Backup's UID.
	TransferID = prefix + "transfer-id"
	// TransferType is "stage" (app keeps running) or "final" (quiesce the app, then copy).
	TransferType = prefix + "transfer-type"
	// TransferTarget is the target PVC as "namespace/name" (default: same namespace and name).
	TransferTarget = prefix + "transfer-target"
	// TransferStorageClass and TransferAccessModes are the resolved target storage class and
	// access modes (comma-separated).
	TransferStorageClass = prefix + "transfer-storage-class"
	TransferAccessModes  = prefix + "transfer-access-modes"
	// TransferVerify ("true"): after the copy, a verify pass compares every file by content on
	// both sides; a difference fails the transfer (the status's verified says what was compared).
	TransferVerify = prefix + "transfer-verify"
	// TransferMove ("true", finals only): the PV moves with the backup; the transfer copies
	// nothing and only quiesces what uses the PVC.
	TransferMove = prefix + "transfer-move"
	// TransferQuiesceScope ("namespace", finals only): quiesce every workload of the PVC's
	// namespace, not only those that mount it.
	TransferQuiesceScope = prefix + "transfer-quiesce-scope"
	// TransferBackup names the Backup that asked, for people reading the PVC.
	TransferBackup = prefix + "transfer-backup"
	// TransferCancel set to the current TransferID cancels that transfer.
	TransferCancel = prefix + "transfer-cancel"
	// TransferStatus is the sidecar's report (JSON, see operation.TransferStatus).
	TransferStatus = prefix + "transfer-status"
	// TransferOverwrite ("true") lets the transfer fill a target PVC that holds data ferry did not
	// write (an admin's choice: ferry-config allowOverwrite or the Backup's AllowOverwrite).
	TransferOverwrite = prefix + "transfer-overwrite"
	// TransferSignature authenticates the request: an HMAC over the request's keys, the PVC's
	// UID and the time it was issued, with the key in Velero's namespace (Secret
	// ferry-request-key) that only Velero's plugins and admins can read. The sidecar refuses a
	// request without a valid one.
	TransferSignature = prefix + "transfer-signature"
)

// Annotations ferry writes while moving a PV (the "swing").
const (
	// OriginalReclaimPolicy remembers a live source PV's reclaim policy before ferry switched it
	// to Retain; `ferry-datamover rollback` puts it back.
	OriginalReclaimPolicy = prefix + "original-reclaim-policy"
)

// Annotations stamped on backed-up items for the restore side.
const (
	// SourceRegistry is the source cluster's internal registry host ("" when it has none).
	SourceRegistry = prefix + "source-registry"
	// SourceServerVersion is the source cluster's Kubernetes version, "major.minor".
	SourceServerVersion = prefix + "source-server-version"
	// BackupMigration carries the Backup's Migration label onto each item it stamps, so restore
	// actions know a stage backup from a final one without reading the Backup.
	BackupMigration = prefix + "backup-migration"
	// ClaimTemplates on a backed-up StatefulSet records, per volume claim template, the storage
	// class and access modes its copied PVCs got on the target (JSON), so the restore gives the
	// templates the same: the StatefulSet's future replicas match its copied claims.
	ClaimTemplates = prefix + "claim-templates"
)

// Quiesce: the sidecar scales down what mounts a PVC before a final transfer, remembering the old
// values here. Restore actions on the target (and `ferry-datamover rollback` on the source) put
// them back.
const (
	// Quiesced labels every object ferry quiesced; the value is the TransferID that did it.
	Quiesced = prefix + "quiesced"
	// PreQuiesceReplicas is spec.replicas before quiesce (Deployment, StatefulSet, ReplicaSet,
	// ReplicationController, DeploymentConfig).
	PreQuiesceReplicas = prefix + "pre-quiesce-replicas"
	// PreQuiesceSuspend is spec.suspend before quiesce (CronJob, Job): "true" or "false".
	PreQuiesceSuspend = prefix + "pre-quiesce-suspend"
	// PreQuiescePaused is spec.paused of a DeploymentConfig before quiesce (a paused DC would
	// not scale down).
	PreQuiescePaused = prefix + "pre-quiesce-paused"
	// PreQuiesceNodeSelector is a DaemonSet's pod nodeSelector before quiesce (JSON).
	PreQuiesceNodeSelector = prefix + "pre-quiesce-node-selector"
	// QuiesceNodeSelector is the node label a quiesced DaemonSet is pinned to; no node has it.
	QuiesceNodeSelector = prefix + "quiesce"
)

// Labels on objects ferry creates for a transfer (pods, services, routes, secrets, PVCs).
const (
	// ManagedBy is the app.kubernetes.io/managed-by value on everything ferry creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "ferry"
	// TransferPVC labels transfer objects with a hash of the source PVC (labels are ≤ 63 chars).
	TransferPVC = prefix + "transfer-pvc"
	// TransferRole is "server" (target side) or "client" (source side) on transfer pods.
	TransferRole = prefix + "transfer-role"
	// TransferIDLabel copies the TransferID (hashed if needed) onto transfer objects.
	TransferIDLabel = prefix + "transfer-id"
	// TransferAttempt numbers a client pod among the attempts of one transfer (label).
	TransferAttempt = prefix + "attempt"
	// SourcePVC on a client pod names its source PVC "namespace/name" (annotation), so the pod's
	// events lead back to the PVC.
	SourcePVC = prefix + "source-pvc"
	// CreatedBy marks a target PVC ferry created (vs. a pre-provisioned one it filled in place).
	CreatedBy = prefix + "created-by-transfer"
	// PairedWith on a target PVC is the UID of the source PVC whose data ferry put there: later
	// transfers from that PVC may update it; any other source is refused.
	PairedWith = prefix + "paired-with"
	// ExcludeFromBackup is Velero's own label (velerov1.ExcludeFromBackupLabel), "true" on every
	// transfer object: a backup taken while a transfer runs (the final one always is) must not
	// carry ferry's pods, Secrets or service account to the target.
	ExcludeFromBackup = "velero.io/exclude-from-backup"
)

// Image streams.
const (
	// SkipImageCopy ("true") on an ImageStream leaves its images where they are.
	SkipImageCopy = prefix + "skip-image-copy"
)

// The image copy request: annotations on a live source ImageStream asking the sidecar to copy its
// locally pushed images to the target registry. The image-stream backup action writes them, or
// `ferry-datamover request imagestream`; unsigned ones are refused as for transfers.
const (
	// ImageCopyID identifies one request (backups use the Backup's UID). A new value starts a new
	// copy; the sidecar does nothing for an ID whose status is already terminal.
	ImageCopyID = prefix + "image-copy-id"
	// ImageCopyTarget is the target image stream as "namespace/name" (default: the same).
	ImageCopyTarget = prefix + "image-copy-target"
	// ImageCopyBackup names the Backup that asked, for people reading the image stream.
	ImageCopyBackup = prefix + "image-copy-backup"
	// ImageCopyCancel set to the current ImageCopyID cancels that copy.
	ImageCopyCancel = prefix + "image-copy-cancel"
	// ImageCopyStatus is the sidecar's report (JSON, see operation.ImageCopyStatus).
	ImageCopyStatus = prefix + "image-copy-status"
	// ImageCopyOverwrite ("true") lets the copy push into a target stream ferry did not create and
	// that already has images (an admin's choice, like TransferOverwrite).
	ImageCopyOverwrite = prefix + "image-copy-overwrite"
	// ImageCopySignature authenticates the request, as TransferSignature does for PVCs.
	ImageCopySignature = prefix + "image-copy-signature"
	// ImageCopyCreated marks a target ImageStream the sidecar created before pushing into it (the
	// value is the ImageCopyID); the restore replaces its metadata and spec with the backed-up ones.
	ImageCopyCreated = prefix + "created-by-image-copy"
)

// Keys of other projects that ferry reads. They are not ferry's, but they live here so every key
// ferry depends on is in one table.
const (
	// OpenShift.
	RouteHostGenerated          = "openshift.io/host.generated"
	ServingCertOriginatingSvc   = "service.alpha.openshift.io/originating-service-name"
	BuildNameAnnotation         = "openshift.io/build.name"
	NamespaceUIDRange           = "openshift.io/sa.scc.uid-range"
	NamespaceSupplementalGroups = "openshift.io/sa.scc.supplemental-groups"
	NamespaceMCS                = "openshift.io/sa.scc.mcs"
	// A project's node selector: its pods run only on nodes with these labels.
	NamespaceNodeSelector = "openshift.io/node-selector"
	// Secret annotations naming the service account a dockercfg secret belongs to.
	ServiceAccountNameAnnotation = "kubernetes.io/service-account.name"
	InternalRegistryAuthTokenSA  = "openshift.io/internal-registry-auth-token.service-account"
	// On a ServiceAccount (OpenShift ≥ 4.16): the name of its generated pull secret.
	InternalRegistryPullSecretRef = "openshift.io/internal-registry-pull-secret-ref"
	// Deployments and friends may carry image-change triggers in this annotation (JSON).
	ImageTriggers = "image.openshift.io/triggers"

	// openshift-velero-plugin (OADP installs it next to ferry). Its common backup action stamps
	// the source's internal registry host on workloads and BuildConfigs; its restore actions
	// rewrite image references only while that stamp is there, so ferry removes it where it
	// rewrites them itself. Its image-stream backup marks streams whose images it copied.
	OVPBackupRegistryHostname = "openshift.io/backup-registry-hostname"
	OVPMigrationRegistry      = "openshift.io/migration-registry"

	// Kubernetes.
	SelectedNode                = "volume.kubernetes.io/selected-node"
	BetaStorageClassAnnotation  = "volume.beta.kubernetes.io/storage-class"
	HostnameLabel               = "kubernetes.io/hostname"
	KubectlLastAppliedConfig    = "kubectl.kubernetes.io/last-applied-configuration"
	PVCBindCompletedAnnotation  = "pv.kubernetes.io/bind-completed"
	PVCBoundByControllerAnnot   = "pv.kubernetes.io/bound-by-controller"
	PVProvisionedByAnnotation   = "pv.kubernetes.io/provisioned-by"
	StorageProvisionerAnnot     = "volume.kubernetes.io/storage-provisioner"
	BetaStorageProvisionerAnnot = "volume.beta.kubernetes.io/storage-provisioner"
	// DefaultStorageClass marks a cluster's default StorageClass (the test stack sets it).
	DefaultStorageClass = "storageclass.kubernetes.io/is-default-class"

	// Velero: the Schedule a Backup was made by (velerov1.ScheduleNameLabel); the dashboard
	// groups a schedule's backups by it.
	VeleroScheduleName = "velero.io/schedule-name"
)

// IsTransferKey reports whether an annotation key belongs to the transfer request/status that
// lives on a source PVC and must not be carried to the target.
func IsTransferKey(key string) bool {
	switch key {
	case TransferID, TransferType, TransferTarget, TransferStorageClass, TransferAccessModes,
		TransferVerify, TransferMove, TransferQuiesceScope, TransferBackup, TransferCancel, TransferStatus, TransferOverwrite, TransferSignature:
		return true
	}
	return false
}

// IsImageCopyKey reports whether an annotation key belongs to the image copy request/status that
// lives on a source ImageStream (or marks a target one ferry created) and must not be restored.
func IsImageCopyKey(key string) bool {
	switch key {
	case ImageCopyID, ImageCopyTarget, ImageCopyBackup, ImageCopyCancel, ImageCopyStatus, ImageCopyCreated,
		ImageCopyOverwrite, ImageCopySignature:
		return true
	}
	return false
}
