package datamover

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
	"github.com/ferry-dev/ferry/internal/names"
	"github.com/ferry-dev/ferry/internal/transfer"
)

// SCCClusterRole is the ClusterRole (deploy/) that grants `use` of the ferry-transfer SCC; on
// OpenShift the transfer service account of each namespace is bound to it.
const SCCClusterRole = "ferry-transfer-scc"

// transferRun is one reconcile of one transfer.
type transferRun struct {
	c     *Controller
	pvc   *corev1.PersistentVolumeClaim
	req   *transfer.Request
	st    *transfer.Status
	cfg   *config.Config
	names transferNames
	log   logr.Logger
}

func (t *transferRun) step(ctx context.Context) (ctrl.Result, error) {
	switch t.st.Phase {
	case transfer.PhasePending:
		return t.admit(ctx)
	case transfer.PhasePreparing:
		return t.prepare(ctx)
	case transfer.PhaseQuiescing:
		return t.quiesce(ctx)
	case transfer.PhaseTransferring:
		return t.transfer(ctx)
	}
	return ctrl.Result{}, permanent(fmt.Errorf("unknown phase %q in the transfer status", t.st.Phase))
}

// enter moves the transfer to phase and writes it.
func (t *transferRun) enter(ctx context.Context, phase transfer.Phase, reason, message string) error {
	t.st.Phase, t.st.Message, t.st.Since = phase, "", transfer.NewTime(t.c.now())
	if err := t.c.writeStatus(ctx, t.pvc, t.st); err != nil {
		return err
	}
	t.c.recorder.Event(t.pvc, corev1.EventTypeNormal, reason, message)
	t.log.Info(message, "phase", phase)
	return nil
}

// wait records why the transfer is waiting and polls again.
func (t *transferRun) wait(ctx context.Context, why string) (ctrl.Result, error) {
	t.st.Message = why
	return ctrl.Result{RequeueAfter: pollInterval}, t.c.writeStatus(ctx, t.pvc, t.st)
}

func (t *transferRun) admit(ctx context.Context) (ctrl.Result, error) {
	key := t.pvc.Namespace + "/" + t.pvc.Name
	ok, inUse, err := t.c.admission.admit(key, t.cfg.Concurrency, func() (map[string]bool, error) { return t.c.activeTransfers(ctx) })
	if err != nil {
		return ctrl.Result{}, err
	}
	if !ok {
		return t.wait(ctx, fmt.Sprintf("waiting for a transfer slot (%d of %d in use)", inUse, t.cfg.Concurrency))
	}
	return ctrl.Result{Requeue: true}, t.enter(ctx, transfer.PhasePreparing, "TransferPreparing", "preparing the target "+t.st.Target)
}

// prepare sets up the target side and the certificates, and resolves the endpoint.
func (t *transferRun) prepare(ctx context.Context) (ctrl.Result, error) {
	tc, err := t.c.targets.Get(ctx, t.cfg.TargetKubeconfigSecret)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := t.ensureTargetNamespace(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	if err := t.ensureTargetPVC(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	if err := t.ensureCerts(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	server, err := t.ensureServer(ctx, tc)
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
	t.st.Endpoint = ep.address
	if t.req.Type == transfer.Final {
		return ctrl.Result{Requeue: true}, t.enter(ctx, transfer.PhaseQuiescing, "TransferQuiescing", "quiescing the workloads that use the PVC before the final pass")
	}
	return ctrl.Result{Requeue: true}, t.enter(ctx, transfer.PhaseTransferring, "TransferStarted", "copying to "+t.st.Target+" through "+ep.address)
}

// ensureTargetNamespace creates the target namespace, carrying the source namespace's OpenShift
// UID range, supplemental groups and MCS label so copied files stay owned correctly.
func (t *transferRun) ensureTargetNamespace(ctx context.Context, tc *kube.Clients) error {
	src, err := t.c.kube.CoreV1().Namespaces().Get(ctx, t.pvc.Namespace, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading source namespace %s: %w", t.pvc.Namespace, err)
	}
	carried := map[string]string{}
	for _, k := range []string{keys.NamespaceUIDRange, keys.NamespaceSupplementalGroups, keys.NamespaceMCS} {
		if v, ok := src.Annotations[k]; ok {
			carried[k] = v
		}
	}
	cur, err := tc.Kube.CoreV1().Namespaces().Get(ctx, t.req.TargetNamespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: t.req.TargetNamespace, Annotations: carried}}
		if _, err := tc.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s on the target: %w", t.req.TargetNamespace, err)
		}
		t.c.recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TargetNamespaceCreated", "created namespace %s on the target", t.req.TargetNamespace)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading namespace %s on the target (%s): %w", t.req.TargetNamespace, hostOf(tc), err)
	}
	if cur.DeletionTimestamp != nil {
		return fmt.Errorf("namespace %s on the target is being deleted", t.req.TargetNamespace)
	}
	if want, have := carried[keys.NamespaceUIDRange], cur.Annotations[keys.NamespaceUIDRange]; want != "" && have != "" && want != have {
		t.c.recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TargetUIDRangeDiffers",
			"namespace %s on the target has UID range %s, the source %s: copied files keep their source owners, which the target's pods may not run as", t.req.TargetNamespace, have, want)
	}
	return nil
}

// targetStorageClass is the class a created target PVC gets: the request's, else the config's
// mapping of the source's, else the source's.
func (t *transferRun) targetStorageClass() *string {
	if t.req.StorageClass != nil {
		return t.req.StorageClass
	}
	var source string
	if t.pvc.Spec.StorageClassName != nil {
		source = *t.pvc.Spec.StorageClassName
	}
	if target, ok := t.cfg.TargetStorageClass(source); ok {
		return &target
	}
	return t.pvc.Spec.StorageClassName
}

// ensureTargetPVC creates the target PVC, or reuses an existing one as it is (pre-provisioned,
// even of another storage class: it is filled in place).
func (t *transferRun) ensureTargetPVC(ctx context.Context, tc *kube.Clients) error {
	pvcs := tc.Kube.CoreV1().PersistentVolumeClaims(t.req.TargetNamespace)
	cur, err := pvcs.Get(ctx, t.req.TargetName, metav1.GetOptions{})
	if err == nil {
		if cur.DeletionTimestamp != nil {
			return fmt.Errorf("target PVC %s is being deleted", t.st.Target)
		}
		if want := requestedSize(t.pvc); !want.IsZero() {
			if have := cur.Spec.Resources.Requests[corev1.ResourceStorage]; have.Cmp(want) < 0 {
				t.c.recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TargetPVCSmaller", "target PVC %s requests %s, the source %s: it may not hold the data", t.st.Target, have.String(), want.String())
			}
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading target PVC %s (%s): %w", t.st.Target, hostOf(tc), err)
	}
	sc := t.targetStorageClass()
	if err := checkStorageClass(ctx, tc, sc); err != nil {
		return err
	}
	modes := t.req.AccessModes
	if len(modes) == 0 {
		modes = t.cfg.TargetAccessModes(t.pvc.Spec.AccessModes)
	}
	fs := corev1.PersistentVolumeFilesystem
	lbls := map[string]string{}
	for k, v := range t.pvc.Labels {
		if !strings.HasPrefix(k, "ferry.dev/") {
			lbls[k] = v
		}
	}
	lbls[keys.CreatedBy] = names.Label(t.req.ID)
	want := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: t.req.TargetNamespace, Name: t.req.TargetName, Labels: lbls},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      modes,
			StorageClassName: sc,
			VolumeMode:       &fs,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: requestedSize(t.pvc)}},
		},
	}
	if _, err := pvcs.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			return permanent(fmt.Errorf("creating target PVC %s: %w", t.st.Target, err))
		}
		return fmt.Errorf("creating target PVC %s: %w", t.st.Target, err)
	}
	scName := "(the default class)"
	if sc != nil {
		scName = *sc
	}
	t.c.recorder.Eventf(t.pvc, corev1.EventTypeNormal, "TargetPVCCreated", "created target PVC %s with storage class %s", t.st.Target, scName)
	return nil
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
		return fmt.Errorf("listing the target's storage classes (%s): %w", hostOf(tc), err)
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
		return permanent(fmt.Errorf("the target cluster has no default storage class; map one with storageClassMapping in ferry-config or annotate the PVC with %s (classes: %s)", keys.StorageClass, strings.Join(known, ", ")))
	case *sc == "":
		return nil // explicitly no class: binds to a pre-made PV
	}
	return permanent(fmt.Errorf("storage class %q does not exist on the target cluster (it has: %s)", *sc, strings.Join(known, ", ")))
}

// ensureTransferServiceAccount makes the service account transfer pods run as, and on OpenShift
// binds it to the ClusterRole granting the ferry-transfer SCC.
func ensureTransferServiceAccount(ctx context.Context, k kubernetes.Interface, apis *kube.APIs, namespace string) error {
	lbl := ownLabels()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: TransferServiceAccount, Labels: lbl}}
	if _, err := k.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating service account %s/%s: %w", namespace, TransferServiceAccount, err)
	}
	if ok, err := apis.Has(kube.SecurityGV, "securitycontextconstraints"); err != nil || !ok {
		return err
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: SCCClusterRole, Labels: lbl},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: SCCClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: TransferServiceAccount, Namespace: namespace}},
	}
	if _, err := k.RbacV1().RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("binding %s/%s to the ferry-transfer SCC: %w", namespace, TransferServiceAccount, err)
	}
	return nil
}

// ensureCerts makes the transfer's certificates: the server's Secret on the target, the
// client's here. Both come from one CA made for this transfer only; if either Secret is missing
// (a restart between the two creates) both are made again.
func (t *transferRun) ensureCerts(ctx context.Context, tc *kube.Clients) error {
	srvSecrets, cliSecrets := tc.Kube.CoreV1().Secrets(t.req.TargetNamespace), t.c.kube.CoreV1().Secrets(t.pvc.Namespace)
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
	certs, err := GenerateCerts(DefaultCertValidity)
	if err != nil {
		return err
	}
	if err := replaceSecret(ctx, srvSecrets, certSecret(t.req.TargetNamespace, t.names.server, t.names.labels(t.req.ID, RoleServer), certs.Server)); err != nil {
		return fmt.Errorf("writing the server certificate Secret on the target: %w", err)
	}
	if err := replaceSecret(ctx, cliSecrets, certSecret(t.pvc.Namespace, t.names.client, t.names.labels(t.req.ID, RoleClient), certs.Client)); err != nil {
		return fmt.Errorf("writing the client certificate Secret: %w", err)
	}
	return nil
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

// ensureServer returns the transfer's live server pod, creating one when there is none. A server
// pod that ended before the client finished is replaced.
func (t *transferRun) ensureServer(ctx context.Context, tc *kube.Clients) (*corev1.Pod, error) {
	sel := labels.SelectorFromSet(t.names.labels(t.req.ID, RoleServer)).String()
	pods, err := tc.Kube.CoreV1().Pods(t.req.TargetNamespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing server pods on the target: %w", err)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			transferFailures.WithLabelValues(RoleServer).Inc()
			t.c.recorder.Eventf(t.pvc, corev1.EventTypeWarning, "ServerPodEnded", "server pod %s/%s ended (%s); starting another", p.Namespace, p.Name, podState(p))
			if err := tc.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return nil, err
			}
			continue
		}
		return p, nil
	}
	if err := ensureTransferServiceAccount(ctx, tc.Kube, tc.APIs, t.req.TargetNamespace); err != nil {
		return nil, err
	}
	created, err := tc.Kube.CoreV1().Pods(t.req.TargetNamespace).Create(ctx, serverPod(t.names, t.req.TargetNamespace, t.req.TargetName, t.req.ID, t.cfg), metav1.CreateOptions{})
	if err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return nil, permanent(fmt.Errorf("creating the server pod on the target: %w", err))
		}
		return nil, fmt.Errorf("creating the server pod on the target: %w", err)
	}
	return created, nil
}

func (t *transferRun) quiesce(ctx context.Context) (ctrl.Result, error) {
	done, err := quiesceWorkloads(ctx, t.c.dynamic, t.c.apis, t.c.reader, t.pvc.Namespace, t.pvc.Name, t.req.ID)
	if len(done) > 0 && strings.Join(done, ",") != strings.Join(t.st.Quiesced, ",") {
		t.st.Quiesced = done
		t.c.recorder.Eventf(t.pvc, corev1.EventTypeNormal, "Quiesced", "scaled down %s (ferry-datamover rollback brings them back)", strings.Join(done, ", "))
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	pods, err := podsUsing(ctx, t.c.reader, t.pvc.Namespace, t.pvc.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(pods) > 0 {
		var n []string
		for _, p := range pods {
			n = append(n, p.Name)
		}
		return t.wait(ctx, fmt.Sprintf("waiting for %d pods using the PVC to stop: %s", len(pods), strings.Join(n, ", ")))
	}
	return ctrl.Result{Requeue: true}, t.enter(ctx, transfer.PhaseTransferring, "TransferStarted", "copying to "+t.st.Target+" through "+t.st.Endpoint)
}

// transfer runs client pods until one succeeds or the attempts are spent, reporting progress.
func (t *transferRun) transfer(ctx context.Context) (ctrl.Result, error) {
	tc, err := t.c.targets.Get(ctx, t.cfg.TargetKubeconfigSecret)
	if err != nil {
		return ctrl.Result{}, err
	}
	if _, err := t.ensureServer(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	pods, err := t.clientPods(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var latest *corev1.Pod
	attempt := 0
	for i := range pods {
		if a, _ := strconv.Atoi(pods[i].Labels[AttemptLabel]); a > attempt {
			attempt, latest = a, &pods[i]
		}
	}
	if latest == nil || latest.Status.Phase == corev1.PodFailed {
		if latest != nil {
			transferFailures.WithLabelValues(RoleClient).Inc()
			why := t.outcome(ctx, latest)
			if attempt >= maxClientAttempts {
				return t.c.finish(ctx, t.pvc, t.req, t.st, transfer.PhaseFailed, fmt.Sprintf("%d attempts failed; the last: %s", attempt, why))
			}
			t.c.recorder.Eventf(t.pvc, corev1.EventTypeWarning, "TransferAttemptFailed", "attempt %d failed: %s", attempt, why)
		}
		return ctrl.Result{RequeueAfter: pollInterval}, t.startClient(ctx, attempt+1)
	}
	t.observe(ctx, latest)
	switch latest.Status.Phase {
	case corev1.PodSucceeded:
		t.st.Percent = 100
		return t.c.finish(ctx, t.pvc, t.req, t.st, transfer.PhaseCompleted, "")
	case corev1.PodPending:
		t.st.Message = "client pod " + latest.Name + ": " + podState(latest)
	default:
		t.st.Message = ""
	}
	return ctrl.Result{RequeueAfter: pollInterval}, t.c.writeStatus(ctx, t.pvc, t.st)
}

func (t *transferRun) clientPods(ctx context.Context) ([]corev1.Pod, error) {
	sel := labels.SelectorFromSet(t.names.labels(t.req.ID, RoleClient)).String()
	list, err := t.c.kube.CoreV1().Pods(t.pvc.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("listing client pods: %w", err)
	}
	return list.Items, nil
}

// startClient creates client pod number attempt, next to the app for a ReadWriteOnce volume
// that is mounted (a stage pass while the app runs).
func (t *transferRun) startClient(ctx context.Context, attempt int) error {
	node := ""
	if t.req.Type == transfer.Stage {
		pods, err := podsUsing(ctx, t.c.reader, t.pvc.Namespace, t.pvc.Name)
		if err != nil {
			return err
		}
		for _, m := range t.pvc.Spec.AccessModes {
			if m == corev1.ReadWriteOncePod && len(pods) > 0 {
				return permanent(fmt.Errorf("the PVC is ReadWriteOncePod and pod %s uses it: only a final transfer (after quiesce) can read it", pods[0].Name))
			}
		}
		if !hasMode(t.pvc, corev1.ReadWriteMany) && !hasMode(t.pvc, corev1.ReadOnlyMany) {
			node = nodeOf(pods)
		}
	}
	ep := endpoint{address: t.st.Endpoint}
	if t.cfg.EndpointType == config.EndpointRoute {
		host, _, _ := strings.Cut(t.st.Endpoint, ":")
		ep.sni = host
	}
	// Right before the pod (here and for the server): another PVC's transfer ending in this
	// namespace removes the service account, and a pod naming a missing one is Forbidden.
	if err := ensureTransferServiceAccount(ctx, t.c.kube, t.c.apis, t.pvc.Namespace); err != nil {
		return err
	}
	pod := clientPod(t.names, t.pvc, t.req, t.cfg, ep, attempt, node)
	if _, err := t.c.kube.CoreV1().Pods(t.pvc.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return permanent(fmt.Errorf("creating the client pod: %w", err))
		}
		return fmt.Errorf("creating the client pod: %w", err)
	}
	if attempt > t.st.Attempts {
		t.st.Attempts = attempt
	}
	return t.c.writeStatus(ctx, t.pvc, t.st)
}

func hasMode(pvc *corev1.PersistentVolumeClaim, m corev1.PersistentVolumeAccessMode) bool {
	for _, have := range pvc.Spec.AccessModes {
		if have == m {
			return true
		}
	}
	return false
}

// observe reads the client's progress from its log (the JSON lines `send --progress=json`
// prints) into the status.
func (t *transferRun) observe(ctx context.Context, pod *corev1.Pod) {
	events := t.events(ctx, pod)
	for _, e := range events {
		applyEvent(t.st, e, podAttempt(pod))
	}
}

// outcome explains how a failed client pod ended: send's error event, else the termination
// message kubelet kept.
func (t *transferRun) outcome(ctx context.Context, pod *corev1.Pod) string {
	for _, e := range t.events(ctx, pod) {
		if e.Type == EventError && e.Error != "" {
			return e.Error
		}
	}
	return podState(pod)
}

// events returns the parsed events of the pod's recent log lines, oldest first.
func (t *transferRun) events(ctx context.Context, pod *corev1.Pod) []Event {
	tail := int64(40)
	raw, err := t.c.kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: SendContainer, TailLines: &tail}).DoRaw(ctx)
	if err != nil {
		t.log.V(1).Info("cannot read the client log yet", "pod", pod.Name, "error", err.Error())
		return nil
	}
	var out []Event
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if e, err := ParseEvent(line); err == nil {
			out = append(out, e)
		}
	}
	return out
}

func podAttempt(p *corev1.Pod) int {
	a, _ := strconv.Atoi(p.Labels[AttemptLabel])
	return a
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState says briefly where a pod is: its phase and the first reason it gives.
func podState(p *corev1.Pod) string {
	s := string(p.Status.Phase)
	if p.Status.Phase == corev1.PodRunning && !podReady(p) {
		s = "Running, not ready yet"
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			return strings.TrimSpace(s + ": " + cs.State.Waiting.Reason + " " + cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			msg := strings.TrimSpace(cs.State.Terminated.Message)
			if i := strings.LastIndex(msg, "\n"); i >= 0 {
				msg = msg[i+1:]
			}
			return fmt.Sprintf("%s: exit code %d %s", s, cs.State.Terminated.ExitCode, msg)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status == corev1.ConditionFalse && c.Message != "" {
			return s + ": " + c.Message
		}
	}
	return s
}
