package volume

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/names"
	"github.com/ferry-dev/ferry/internal/operation"
)

// Paths inside transfer pods: everything ferry mounts is under /mnt, apart from the image.
const (
	DataPath  = "/mnt/data"
	CertsPath = "/mnt/certs"
	// TmpPath is scratch space (stunnel and rsync configuration, pid files): the root file
	// system of transfer containers is read-only.
	TmpPath = "/mnt/tmp"
	// DevicePath is where a block-mode volume appears in transfer pods: alone in its folder,
	// which is the rsync daemon's module (it holds nothing else a client could write).
	DevicePath = "/dev/ferry/volume"
	// readyFile is created by serve once stunnel listens: the server pod's readiness.
	readyFile = TmpPath + "/ready"
	// TransferServiceAccount runs the transfer pods in each namespace ferry uses; on OpenShift it
	// is bound to the ferry-transfer SCC (deploy/).
	TransferServiceAccount = "ferry-transfer"
	// Container names.
	ServeContainer = "serve"
	SendContainer  = "send"
)

// RoleServer and RoleClient are the values of keys.TransferRole.
const (
	RoleServer = "server"
	RoleClient = "client"
)

// transferNames are the names of one PVC's transfer objects. They depend only on the source PVC,
// so a restarted sidecar finds them again; every name is a valid DNS-1123 label.
type transferNames struct {
	hash   string // names.Hash of the source PVC
	server string // server pod prefix, server Secret, Service, Route
	client string // client pod prefix, client Secret
}

func namesFor(namespace, pvc string) transferNames {
	h := names.Hash(namespace, pvc)
	return transferNames{
		hash:   h,
		server: names.Join(names.MaxLabel, "ferry-server", h),
		client: names.Join(names.MaxLabel, "ferry-client", h),
	}
}

// labels are put on every object of a transfer; selecting by the PVC hash alone finds the
// leftovers of earlier transfers of the same PVC.
func (n transferNames) labels(id, role string) map[string]string {
	l := ownLabels()
	l[keys.TransferPVC] = n.hash
	l[keys.TransferIDLabel] = names.Label(id)
	if role != "" {
		l[keys.TransferRole] = role
	}
	return l
}

// ownLabels mark an object as ferry's and keep it out of Velero backups.
func ownLabels() map[string]string {
	return map[string]string{keys.ManagedByLabel: keys.ManagedByValue, keys.ExcludeFromBackup: "true"}
}

// selector selects all transfer objects of this PVC (any transfer ID).
func (n transferNames) selector() map[string]string {
	return map[string]string{keys.ManagedByLabel: keys.ManagedByValue, keys.TransferPVC: n.hash}
}

// certSecret holds one side's certificates. It is owned by the PVC of its side, so garbage
// collection removes one that cleanup could not find (ferry deletes Secrets only by name).
func certSecret(owner *corev1.PersistentVolumeClaim, name string, labels map[string]string, b dataplane.Bundle) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: owner.Namespace, Name: name, Labels: labels, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "PersistentVolumeClaim", Name: owner.Name, UID: owner.UID,
		}}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{
			dataplane.CAFile:   b.CA,
			dataplane.CertFile: b.Cert,
			dataplane.KeyFile:  b.Key,
		},
	}
}

// podSecurity is least privilege for each side, within Pod Security "baseline" as root and
// "restricted" without. As root the receiver needs to set owners (CHOWN), modes and times of
// files it does not own (FOWNER, FSETID) and to write into any directory (DAC_OVERRIDE); its
// rsync daemon also resets its groups (SETGID: setgroups) and chroots into the volume so no
// symlink there can lead it out (SYS_CHROOT); it creates the device files the source has
// (MKNOD; without it they are skipped and reported). The sender reads every file of a read-only mount
// with DAC_OVERRIDE — not DAC_READ_SEARCH, which would let anyone with pods/exec there open the
// node's files by handle (open_by_handle_at), and which "baseline" refuses. Without root, files
// keep the transfer user's ownership.
func podSecurity(cfg *config.Config, role string) (*corev1.PodSecurityContext, *corev1.SecurityContext) {
	no, yes := false, true
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	if cfg.TransferRunAsRoot {
		root := int64(0)
		sc.RunAsUser = &root
		if role == RoleServer {
			sc.Capabilities.Add = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD", "SETGID", "SYS_CHROOT"}
		} else {
			sc.Capabilities.Add = []corev1.Capability{"DAC_OVERRIDE"}
		}
		return &corev1.PodSecurityContext{}, sc
	}
	uid := cfg.TransferRunAsUser
	sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = &uid, &uid, &yes
	pod := &corev1.PodSecurityContext{}
	if role == RoleServer {
		pod.FSGroup = &uid
	}
	return pod, sc
}

func resources(cfg *config.Config) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    cfg.TransferCPU,
		corev1.ResourceMemory: cfg.TransferMemory,
	}}
	for name, limit := range map[corev1.ResourceName]resource.Quantity{corev1.ResourceCPU: cfg.TransferCPULimit, corev1.ResourceMemory: cfg.TransferMemoryLimit} {
		if !limit.IsZero() {
			if r.Limits == nil {
				r.Limits = corev1.ResourceList{}
			}
			r.Limits[name] = limit
		}
	}
	return r
}

// place puts a transfer pod where ferry-config says (transferNodeSelector, transferTolerations,
// transferAffinity), and a client pod on node (when set) as well: a ReadWriteOnce volume an app
// has mounted can be mounted only there. The pin is added to every required node-affinity term,
// so the pod must satisfy both.
func place(spec *corev1.PodSpec, cfg *config.Config, node string) {
	if len(cfg.TransferNodeSelector) > 0 {
		spec.NodeSelector = maps.Clone(cfg.TransferNodeSelector)
	}
	spec.Tolerations = slices.Clone(cfg.TransferTolerations)
	if cfg.TransferAffinity != nil {
		spec.Affinity = cfg.TransferAffinity.DeepCopy()
	}
	if node == "" {
		return
	}
	pin := corev1.NodeSelectorRequirement{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	required := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if required == nil || len(required.NodeSelectorTerms) == 0 {
		spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{pin}}}}
		return
	}
	for i := range required.NodeSelectorTerms {
		required.NodeSelectorTerms[i].MatchFields = append(required.NodeSelectorTerms[i].MatchFields, pin)
	}
}

// serverPod runs `ferry-datamover serve` on the target PVC, listening on the pod's own IP.
func serverPod(n transferNames, namespace, pvc, id string, cfg *config.Config, requireEmpty, block bool) *corev1.Pod {
	podSC, sc := podSecurity(cfg, RoleServer)
	no := false
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: n.server + "-", Labels: n.labels(id, RoleServer)},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			ServiceAccountName:           TransferServiceAccount,
			AutomountServiceAccountToken: &no,
			SecurityContext:              podSC,
			Containers: []corev1.Container{{
				Name:    ServeContainer,
				Image:   cfg.TransferImage,
				Command: serveCommand(requireEmpty, block),
				Env: append([]corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"},
				}}}, tmpEnv),
				Ports: []corev1.ContainerPort{{Name: "rsync-tls", ContainerPort: dataplane.DefaultPort}},
				// Not a TCP probe: stunnel would log each as a failed TLS handshake.
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					Exec: &corev1.ExecAction{Command: []string{"test", "-e", readyFile}},
				}, PeriodSeconds: 2},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: DataPath},
					{Name: "certs", MountPath: CertsPath, ReadOnly: true},
					tmpMount,
				},
				Resources:                resources(cfg),
				SecurityContext:          sc,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc}}},
				certVolume(n.server, 0o400),
				tmpVolume,
			},
		},
	}
	if block {
		asDevice(&p.Spec.Containers[0])
	}
	place(&p.Spec, cfg, "")
	return p
}

// asDevice hands a container its "data" volume as the block device at DevicePath instead of a
// mounted file system.
func asDevice(c *corev1.Container) {
	c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "data" })
	c.VolumeDevices = []corev1.VolumeDevice{{Name: "data", DevicePath: DevicePath}}
}

// isBlock says whether a PVC is a raw block volume (volumeMode: Block).
func isBlock(pvc *corev1.PersistentVolumeClaim) bool {
	return volumeModeOf(pvc) == corev1.PersistentVolumeBlock
}

// binary is the data mover in transfer images (deploy/Dockerfile.datamover).
const binary = "ferry-datamover"

// serveCommand runs `serve` on the target PVC, listening on the pod's own IP; requireEmpty
// refuses a volume that holds data; block writes into the device instead of a file system.
func serveCommand(requireEmpty, block bool) []string {
	o := dataplane.NewServeOptions()
	o.Dir, o.Listen, o.CertDir, o.ReadyFile = DataPath, "$(POD_IP):"+strconv.Itoa(dataplane.DefaultPort), CertsPath, readyFile
	if block {
		o.Dir, o.Device = "", DevicePath
	}
	o.RequireEmpty = requireEmpty
	return append([]string{binary}, o.Args()...)
}

// sendCommand runs `send` for a transfer, reporting progress as JSON lines for the sidecar;
// block reads the device instead of a file system.
func sendCommand(req *operation.TransferRequest, cfg *config.Config, ep endpoint, block bool) []string {
	o := dataplane.NewSendOptions()
	o.Dir, o.To, o.CertDir, o.SNI, o.Progress = DataPath, ep.address, CertsPath, ep.sni, dataplane.ProgressJSON
	if block {
		o.Dir, o.Device = "", DevicePath
	}
	o.Streams, o.Verify, o.BwLimitKBps = cfg.Streams, req.Verify != nil && *req.Verify, cfg.BwLimitKBps
	return append([]string{binary}, o.Args()...)
}

// clientPod runs `ferry-datamover send` on the source PVC, mounted read-only: a transfer never
// writes to the source. node pins it next to a running app pod (a ReadWriteOnce volume can only
// be mounted on the node that already has it).
func clientPod(n transferNames, pvc *corev1.PersistentVolumeClaim, req *operation.TransferRequest, cfg *config.Config, ep endpoint, attempt int, node string) *corev1.Pod {
	podSC, sc := podSecurity(cfg, RoleClient)
	no := false
	labels := n.labels(req.ID, RoleClient)
	labels[keys.TransferAttempt] = strconv.Itoa(attempt)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    pvc.Namespace,
			GenerateName: fmt.Sprintf("%s-%d-", n.client, attempt),
			Labels:       labels,
			Annotations:  map[string]string{keys.SourcePVC: pvc.Namespace + "/" + pvc.Name},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			ServiceAccountName:           TransferServiceAccount,
			AutomountServiceAccountToken: &no,
			SecurityContext:              podSC,
			Containers: []corev1.Container{{
				Name:    SendContainer,
				Image:   cfg.TransferImage,
				Command: sendCommand(req, cfg, ep, isBlock(pvc)),
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: DataPath, ReadOnly: true},
					{Name: "certs", MountPath: CertsPath, ReadOnly: true},
					tmpMount,
				},
				Env:                      []corev1.EnvVar{tmpEnv},
				Resources:                resources(cfg),
				SecurityContext:          sc,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc.Name, ReadOnly: true}}},
				certVolume(n.client, clientCertMode(cfg)),
				tmpVolume,
			},
		},
	}
	if isBlock(pvc) {
		// Opened read-only by send; the claim is mounted read-only as well.
		asDevice(&p.Spec.Containers[0])
	}
	place(&p.Spec, cfg, node)
	return p
}

// clientCertMode: a Secret volume's files are root's, given to the pod's fsGroup when it has one.
// A non-root client has none (an fsGroup would have kubelet change the owner of the app's volume
// it reads), so its certificates are readable by every user of the pod: ferry's one container.
func clientCertMode(cfg *config.Config) int32 {
	if cfg.TransferRunAsRoot {
		return 0o400
	}
	return 0o444
}

func certVolume(secret string, mode int32) corev1.Volume {
	return corev1.Volume{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret, DefaultMode: &mode}}}
}

var (
	tmpEnv    = corev1.EnvVar{Name: "TMPDIR", Value: TmpPath}
	tmpMount  = corev1.VolumeMount{Name: "tmp", MountPath: TmpPath}
	tmpVolume = corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
)
