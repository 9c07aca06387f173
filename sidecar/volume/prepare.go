package volume

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/dataplane"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/names"
	"github.com/ferry-dev/ferry/internal/operation"
	"github.com/ferry-dev/ferry/internal/quiesce"
	"github.com/ferry-dev/ferry/sidecar"
)

// prepare sets up the target side and the certificates, and resolves the endpoint.
func (t *job) prepare(ctx context.Context) (ctrl.Result, error) {
	if t.req.Move {
		// The PV travels with the backup: nothing to make on the target, only the app to stop.
		if err := quiesce.CanStop(ctx, t.r.Source, t.pvc.Namespace, t.pvc.Name); errors.Is(err, quiesce.ErrBarePod) {
			return ctrl.Result{}, sidecar.Permanent(err)
		} else if err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, t.enter(ctx, operation.PhaseQuiescing, "TransferQuiescing", "quiescing "+t.quiesceScope()+" before its volume moves")
	}
	tc, err := t.r.Target(ctx, t.cfg)
	if err != nil {
		return ctrl.Result{}, err
	}
	// Decided before anything is made on the target: a refused transfer leaves no trace there.
	if t.req.Type == operation.Final {
		if err := quiesce.CanStop(ctx, t.r.Source, t.pvc.Namespace, t.pvc.Name); errors.Is(err, quiesce.ErrBarePod) {
			return ctrl.Result{}, sidecar.Permanent(err)
		} else if err != nil {
			return ctrl.Result{}, err
		}
	}
	if isBlock(t.pvc) && !t.cfg.TransferRunAsRoot {
		return ctrl.Result{}, sidecar.Permanent(fmt.Errorf("PVC %s/%s is a block volume: its transfer pods open the device as root (ferry-config transferRunAsRoot: true); without root ferry copies file systems only",
			t.pvc.Namespace, t.pvc.Name))
	}
	cur, err := t.checkTarget(ctx, tc)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := t.ensureTargetNamespace(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	target, err := t.ensureTargetPVC(ctx, tc, cur)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := t.ensureCerts(ctx, tc, target); err != nil {
		return ctrl.Result{}, err
	}
	server, err := t.ensureServer(ctx, tc, nil)
	if err != nil {
		return ctrl.Result{}, err
	}
	ep, waiting, err := ensureEndpoint(ctx, tc, t.cfg, t.req.TargetNamespace, t.names, t.req.ID)
	if err != nil {
		return ctrl.Result{}, err
	}
	if waiting != "" {
		return t.wait(ctx, waiting)
	}
	if !podReady(server) {
		return t.wait(ctx, fmt.Sprintf("waiting for server pod %s/%s: %s", server.Namespace, server.Name, podState(server)))
	}
	if err := t.pair(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	t.st.Endpoint = ep.address
	if t.req.Type == operation.Final {
		return ctrl.Result{}, t.enter(ctx, operation.PhaseQuiescing, "TransferQuiescing", "quiescing "+t.quiesceScope()+" before the final pass")
	}
	return ctrl.Result{}, t.enter(ctx, operation.PhaseTransferring, "TransferStarted", "copying to "+t.st.Target+" through "+ep.address)
}

// ensureTargetNamespace creates the target namespace, carrying the source namespace's OpenShift
// identity so copied files stay owned correctly, and warns when an existing one differs.
func (t *job) ensureTargetNamespace(ctx context.Context, tc *kube.Clients) error {
	ns, err := sidecar.EnsureTargetNamespace(ctx, t.r.Source, tc, t.pvc.Namespace, t.req.TargetNamespace)
	if err != nil {
		return err
	}
	if ns.Created {
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TargetNamespaceCreated", "created namespace %s on the target", t.req.TargetNamespace)
	}
	if ns.UIDRangeDiffers() {
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TargetUIDRangeDiffers",
			"namespace %s on the target has UID range %s, the source %s: copied files keep their source owners, which the target's pods may not run as", t.req.TargetNamespace, ns.UIDRange, ns.SourceUIDRange)
	}
	return nil
}

// ensureTargetPVC creates the target PVC unless checkTarget found one (cur), which is filled in
// place (pre-provisioned, even of another storage class). A PVC ferry creates is paired with
// the source PVC from the start.
func (t *job) ensureTargetPVC(ctx context.Context, tc *kube.Clients, cur *corev1.PersistentVolumeClaim) (*corev1.PersistentVolumeClaim, error) {
	pvcs := tc.Kube.CoreV1().PersistentVolumeClaims(t.req.TargetNamespace)
	if cur != nil {
		if want := requestedSize(t.pvc); !want.IsZero() {
			if have := cur.Spec.Resources.Requests[corev1.ResourceStorage]; have.Cmp(want) < 0 {
				t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TargetPVCSmaller", "target PVC %s requests %s, the source %s: it may not hold the data", t.st.Target, have.String(), want.String())
			}
		}
		return cur, nil
	}
	sc := t.req.StorageClass
	modes := t.req.AccessModes
	mode := corev1.PersistentVolumeFilesystem
	if isBlock(t.pvc) {
		mode = corev1.PersistentVolumeBlock
	}
	lbls := map[string]string{}
	for k, v := range t.pvc.Labels {
		if !strings.HasPrefix(k, "ferry.dev/") {
			lbls[k] = v
		}
	}
	lbls[keys.CreatedBy] = names.Label(t.req.ID)
	want := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: t.req.TargetNamespace, Name: t.req.TargetName, Labels: lbls,
			Annotations: map[string]string{keys.PairedWith: string(t.pvc.UID)}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      modes,
			StorageClassName: sc,
			VolumeMode:       &mode,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: requestedSize(t.pvc)}},
		},
	}
	created, err := pvcs.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Made meanwhile (by ferry a moment ago, or by someone else): decided again next time.
		return nil, fmt.Errorf("target PVC %s appeared while ferry created it", t.st.Target)
	}
	if err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			return nil, sidecar.Permanent(fmt.Errorf("creating target PVC %s: %w", t.st.Target, err))
		}
		return nil, fmt.Errorf("creating target PVC %s: %w", t.st.Target, err)
	}
	scName := "(the default class)"
	if sc != nil {
		scName = *sc
	}
	t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TargetPVCCreated", "created target PVC %s with storage class %s", t.st.Target, scName)
	return created, nil
}

// volumeModeOf is a PVC's volume mode; unset means Filesystem.
func volumeModeOf(pvc *corev1.PersistentVolumeClaim) corev1.PersistentVolumeMode {
	if pvc.Spec.VolumeMode == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *pvc.Spec.VolumeMode
}

// requestedSize is the larger of the source PVC's request and its bound capacity.
func requestedSize(pvc *corev1.PersistentVolumeClaim) resource.Quantity {
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if c, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok && c.Cmp(size) > 0 {
		size = c
	}
	return size
}

// checkStorageClass fails clearly when a created PVC would never be provisioned.
func checkStorageClass(ctx context.Context, tc *kube.Clients, sc *string) error {
	classes, err := tc.Kube.StorageV1().StorageClasses().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing the target's storage classes (%s): %w", sidecar.Host(tc), err)
	}
	var known []string
	hasDefault := false
	for _, c := range classes.Items {
		known = append(known, c.Name)
		if c.Annotations[keys.DefaultStorageClass] == "true" {
			hasDefault = true
		}
		if sc != nil && c.Name == *sc {
			return nil
		}
	}
	sort.Strings(known)
	switch {
	case sc == nil && hasDefault:
		return nil
	case sc == nil:
		return sidecar.Permanent(fmt.Errorf("the target cluster has no default storage class; map one with storageClassMapping in ferry-config or annotate the PVC with %s (classes: %s)", keys.StorageClass, strings.Join(known, ", ")))
	case *sc == "":
		return nil // explicitly no class: binds to a pre-made PV
	}
	return sidecar.Permanent(fmt.Errorf("storage class %q does not exist on the target cluster (it has: %s)", *sc, strings.Join(known, ", ")))
}

// ensureCerts makes the transfer's certificates: the server's Secret on the target, the
// client's here. Both come from one CA made for this transfer only; if either Secret is missing
// (a restart between the two creates) both are made again.
func (t *job) ensureCerts(ctx context.Context, tc *kube.Clients, target *corev1.PersistentVolumeClaim) error {
	srvSecrets, cliSecrets := tc.Kube.CoreV1().Secrets(t.req.TargetNamespace), t.r.Source.Kube.CoreV1().Secrets(t.pvc.Namespace)
	srv, srvErr := srvSecrets.Get(ctx, t.names.server, metav1.GetOptions{})
	cli, cliErr := cliSecrets.Get(ctx, t.names.client, metav1.GetOptions{})
	id := names.Label(t.req.ID)
	if srvErr == nil && cliErr == nil && srv.Labels[keys.TransferIDLabel] == id && cli.Labels[keys.TransferIDLabel] == id {
		return nil
	}
	for _, err := range []error{srvErr, cliErr} {
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading the transfer's certificate Secrets: %w", err)
		}
	}
	return t.writeCerts(ctx, tc, target)
}

// writeCerts makes a CA for this transfer and writes both sides' certificates.
func (t *job) writeCerts(ctx context.Context, tc *kube.Clients, target *corev1.PersistentVolumeClaim) error {
	srvSecrets, cliSecrets := tc.Kube.CoreV1().Secrets(t.req.TargetNamespace), t.r.Source.Kube.CoreV1().Secrets(t.pvc.Namespace)
	certs, err := dataplane.GenerateCerts(dataplane.DefaultCertValidity)
	if err != nil {
		return err
	}
	if err := replaceSecret(ctx, srvSecrets, certSecret(target, t.names.server, t.names.labels(t.req.ID, RoleServer), certs.Server)); err != nil {
		return fmt.Errorf("writing the server certificate Secret on the target: %w", err)
	}
	if err := replaceSecret(ctx, cliSecrets, certSecret(t.pvc, t.names.client, t.names.labels(t.req.ID, RoleClient), certs.Client)); err != nil {
		return fmt.Errorf("writing the client certificate Secret: %w", err)
	}
	return nil
}

// renewBefore: a retry starting with certificates that expire sooner gets new ones, so a
// transfer outlives the certificates' validity (dataplane.DefaultCertValidity).
const renewBefore = 24 * time.Hour

// renewCertsIfExpiring gives the transfer a new CA and certificates when the client's expire
// within renewBefore (a retry of a long transfer), and replaces the server pod, which loaded the
// old ones.
func (t *job) renewCertsIfExpiring(ctx context.Context, tc *kube.Clients) error {
	secret, err := t.r.Source.Kube.CoreV1().Secrets(t.pvc.Namespace).Get(ctx, t.names.client, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the client certificate Secret: %w", err)
	}
	expires, err := certExpiry(secret.Data[dataplane.CertFile])
	if err != nil || t.r.Clock.Now().Add(renewBefore).Before(expires) {
		return err
	}
	target, err := tc.Kube.CoreV1().PersistentVolumeClaims(t.req.TargetNamespace).Get(ctx, t.req.TargetName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading target PVC %s: %w", t.st.Target, err)
	}
	if err := t.writeCerts(ctx, tc, target); err != nil {
		return err
	}
	if err := deleteServerPods(ctx, tc, t.req.TargetNamespace, t.names, t.req.ID); err != nil {
		return err
	}
	t.r.Recorder.Eventf(t.pvc, corev1.EventTypeNormal, "CertificatesRenewed", "the transfer's certificates expired at %s; new ones for the next attempt", expires.UTC().Format(time.RFC3339))
	return nil
}

// certExpiry is when a PEM certificate stops being valid.
func certExpiry(certPEM []byte) (time.Time, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return time.Time{}, fmt.Errorf("the client certificate Secret holds no certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, fmt.Errorf("the client certificate Secret: %w", err)
	}
	return cert.NotAfter, nil
}

type secretClient interface {
	Create(context.Context, *corev1.Secret, metav1.CreateOptions) (*corev1.Secret, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
}

func replaceSecret(ctx context.Context, c secretClient, s *corev1.Secret) error {
	if err := c.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	_, err := c.Create(ctx, s, metav1.CreateOptions{})
	return err
}

// checkTarget decides whether the transfer may fill its target PVC, and returns it (nil while
// it does not exist). Ferry fills a PVC it paired with this source PVC, or one that holds
// nothing (its server checks: requireEmpty); anything else only when an admin allowed
// overwriting. A PVC the target's own pods use is refused for a final pass and warned about for
// a stage. In one cluster, the source PVC is never its own target.
func (t *job) checkTarget(ctx context.Context, tc *kube.Clients) (*corev1.PersistentVolumeClaim, error) {
	t.requireEmpty = false
	if t.cfg.TargetKubeconfigSecret == "" && t.req.TargetNamespace == t.pvc.Namespace && t.req.TargetName == t.pvc.Name {
		return nil, sidecar.Refusal(fmt.Errorf("the target is the source PVC itself (targetKubeconfigSecret is empty: the target is this cluster); map the namespace with namespaceMapping"))
	}
	cur, err := tc.Kube.CoreV1().PersistentVolumeClaims(t.req.TargetNamespace).Get(ctx, t.req.TargetName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// ferry will create it: with a class the target has.
		return nil, checkStorageClass(ctx, tc, t.req.StorageClass)
	}
	if err != nil {
		return nil, fmt.Errorf("reading target PVC %s (%s): %w", t.st.Target, sidecar.Host(tc), err)
	}
	if cur.DeletionTimestamp != nil {
		return nil, fmt.Errorf("target PVC %s is being deleted", t.st.Target)
	}
	if want, have := volumeModeOf(t.pvc), volumeModeOf(cur); want != have {
		return nil, sidecar.Permanent(fmt.Errorf("target PVC %s has volumeMode %s, the source %s: a %s volume cannot be copied into it", t.st.Target, have, want, want))
	}
	switch paired := cur.Annotations[keys.PairedWith]; {
	case paired == string(t.pvc.UID):
	case t.req.Overwrite:
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TargetOverwritten", "target PVC %s was not filled by ferry from this PVC; the backup allows overwriting it", t.st.Target)
	case paired != "":
		return nil, sidecar.Refusal(fmt.Errorf("target PVC %s holds data ferry copied from another PVC (UID %s); ferry does not overwrite it (an admin may allow it: annotation %s=true on the Backup, or allowOverwrite in ferry-config)", t.st.Target, paired, keys.AllowOverwrite))
	default:
		t.requireEmpty = true
	}
	users, err := podsUsing(ctx, tc, t.req.TargetNamespace, t.req.TargetName)
	if err != nil {
		return nil, err
	}
	if len(users) > 0 {
		if t.req.Type == operation.Final {
			return nil, sidecar.Refusal(fmt.Errorf("target PVC %s is in use by pod %s on the target; stop what uses it before the final pass", t.st.Target, users[0]))
		}
		t.r.Recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TargetPVCInUse", "target PVC %s is in use by pod %s on the target: it sees files change while the stage runs", t.st.Target, users[0])
	}
	return cur, nil
}

// pair records on the target PVC that its data is this source PVC's, once its server accepted
// it (empty, or an admin allowed overwriting): later transfers fill it without asking again.
func (t *job) pair(ctx context.Context, tc *kube.Clients) error {
	pvcs := tc.Kube.CoreV1().PersistentVolumeClaims(t.req.TargetNamespace)
	cur, err := pvcs.Get(ctx, t.req.TargetName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading target PVC %s (%s): %w", t.st.Target, sidecar.Host(tc), err)
	}
	if cur.Annotations[keys.PairedWith] == string(t.pvc.UID) {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{keys.PairedWith: string(t.pvc.UID)}}})
	if _, err := pvcs.Patch(ctx, t.req.TargetName, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("pairing target PVC %s with the source: %w", t.st.Target, err)
	}
	return nil
}

// podsUsing names the pods (not ferry's) in namespace of cluster c that mount the PVC.
func podsUsing(ctx context.Context, c *kube.Clients, namespace, pvc string) ([]string, error) {
	pods, err := quiesce.PodsUsing(ctx, c, namespace, pvc)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out, nil
}
