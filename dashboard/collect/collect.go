// Package collect watches, with the viewer's own credentials, what the dashboard shows: ferry's
// Backups in Velero's namespace, and the PVCs, image streams and PVC Events of every namespace
// the viewer may list — cluster-wide when allowed, else namespace by namespace. What the viewer
// may not list (or what the cluster does not serve) becomes a notice, not an error; the informers
// keep retrying, so a right granted later shows up without a restart.
package collect

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	velerov1 "github.com/vmware-tanzu/velero/pkg/apis/velero/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ferry-dev/ferry/dashboard/view"
)

// The resources the dashboard reads.
var (
	Backups      = schema.GroupVersionResource{Group: "velero.io", Version: "v1", Resource: "backups"}
	PVCs         = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	Events       = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	ImageStreams = schema.GroupVersionResource{Group: "image.openshift.io", Version: "v1", Resource: "imagestreams"}
	namespaces   = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// perNamespace are the resources read in the viewer's namespaces (Backups only in Velero's).
var perNamespace = []schema.GroupVersionResource{PVCs, ImageStreams, Events}

// Options say where to look.
type Options struct {
	// Namespaces to show when the viewer may not list cluster-wide; empty: every namespace the
	// viewer may list, else DefaultNamespace.
	Namespaces       []string
	VeleroNamespace  string
	DefaultNamespace string
	// Rescope is how often the viewer's rights are checked again (a wider scope restarts the
	// informers); 0 means 30 s.
	Rescope time.Duration
}

// Collector keeps informers on what the viewer may see.
type Collector struct {
	kube kubernetes.Interface
	dyn  dynamic.Interface
	opts Options

	changed chan struct{}

	mu       sync.Mutex
	watches  map[watchKey]*watched
	notices  []string // about the scope itself (e.g. namespaces not listable)
	scopeKey string
}

type watchKey struct {
	gvr       schema.GroupVersionResource
	namespace string // "" is cluster-wide
}

type watched struct {
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	mu       sync.Mutex
	err      error
}

// New returns a collector; Run starts it.
func New(kube kubernetes.Interface, dyn dynamic.Interface, opts Options) *Collector {
	if opts.Rescope == 0 {
		opts.Rescope = 30 * time.Second
	}
	return &Collector{kube: kube, dyn: dyn, opts: opts, changed: make(chan struct{}, 1), watches: map[watchKey]*watched{}}
}

// Changed receives after anything the collector sees changed.
func (c *Collector) Changed() <-chan struct{} { return c.changed }

func (c *Collector) notify() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// Run watches until ctx ends, checking the viewer's scope again every Options.Rescope.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Rescope)
	defer t.Stop()
	for {
		c.rescope(ctx)
		select {
		case <-ctx.Done():
			c.mu.Lock()
			for _, w := range c.watches {
				w.stop()
			}
			c.mu.Unlock()
			return
		case <-t.C:
		}
	}
}

// Synced reports whether every informer has listed once (successfully or not).
func (c *Collector) Synced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.watches) == 0 {
		return false
	}
	for _, w := range c.watches {
		w.mu.Lock()
		failed := w.err != nil
		w.mu.Unlock()
		if !failed && !w.informer.HasSynced() {
			return false
		}
	}
	return true
}

// rescope works out which namespaces the viewer may read and (re)starts informers for them.
func (c *Collector) rescope(ctx context.Context) {
	want, notices := c.scope(ctx)
	var keysWanted []string
	for k := range want {
		keysWanted = append(keysWanted, k.gvr.String()+"@"+k.namespace)
	}
	sort.Strings(keysWanted)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notices = notices
	sk := strings.Join(keysWanted, ",")
	if sk == c.scopeKey {
		return
	}
	c.scopeKey = sk
	for k, w := range c.watches {
		if !want[k] {
			w.stop()
			delete(c.watches, k)
		}
	}
	for k := range want {
		if _, ok := c.watches[k]; !ok {
			c.watches[k] = c.start(ctx, k)
		}
	}
	c.notify()
}

// scope returns the watches the viewer gets and the notices about what it does not.
func (c *Collector) scope(ctx context.Context) (map[watchKey]bool, []string) {
	want := map[watchKey]bool{{Backups, c.opts.VeleroNamespace}: true}
	var notices []string
	var served []schema.GroupVersionResource
	for _, gvr := range perNamespace {
		if c.serves(gvr) {
			served = append(served, gvr)
		} else {
			notices = append(notices, fmt.Sprintf("This cluster does not serve %s: none are shown.", gvr.GroupResource()))
		}
	}
	for _, gvr := range served {
		if c.may(ctx, "list", gvr, "") && c.may(ctx, "watch", gvr, "") {
			want[watchKey{gvr, ""}] = true
			continue
		}
		for _, ns := range c.namespaces(ctx, &notices) {
			want[watchKey{gvr, ns}] = true
		}
	}
	return want, notices
}

// namespaces are the ones to read when the viewer may not list cluster-wide.
func (c *Collector) namespaces(ctx context.Context, notices *[]string) []string {
	if len(c.opts.Namespaces) > 0 {
		return c.opts.Namespaces
	}
	list, err := c.dyn.Resource(namespaces).List(ctx, metav1.ListOptions{})
	if err == nil {
		var out []string
		for _, n := range list.Items {
			out = append(out, n.GetName())
		}
		return out
	}
	ns := c.opts.DefaultNamespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	msg := fmt.Sprintf("You may not list namespaces (%s): showing namespace %s only; name others with -n.", reason(err), ns)
	if !slices.Contains(*notices, msg) {
		*notices = append(*notices, msg)
	}
	return []string{ns}
}

// serves reports whether the cluster serves a resource (image streams only on OpenShift).
func (c *Collector) serves(gvr schema.GroupVersionResource) bool {
	if gvr.Group == "" {
		return true
	}
	list, err := c.kube.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	for _, r := range list.APIResources {
		if r.Name == gvr.Resource {
			return true
		}
	}
	return false
}

// may asks the API server whether the viewer may do verb on a resource (namespace "": all).
func (c *Collector) may(ctx context.Context, verb string, gvr schema.GroupVersionResource, namespace string) bool {
	return May(ctx, c.kube, verb, gvr, namespace, "")
}

// May asks the API server, with the viewer's credentials, whether they may do verb on a
// resource ("" namespace: in all of them; "" name: any). Any error counts as no.
func May(ctx context.Context, kube kubernetes.Interface, verb string, gvr schema.GroupVersionResource, namespace, name string) bool {
	r, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: verb, Group: gvr.Group, Resource: gvr.Resource, Namespace: namespace, Name: name,
		}},
	}, metav1.CreateOptions{})
	return err == nil && r.Status.Allowed
}

// start runs an informer for one resource in one namespace. Its list errors are kept (they
// become notices) and cleared by the next list that works: the reflector retries with backoff.
func (c *Collector) start(ctx context.Context, k watchKey) *watched {
	ctx, cancel := context.WithCancel(ctx)
	w := &watched{stop: cancel}
	ri := c.dyn.Resource(k.gvr).Namespace(k.namespace)
	narrow := func(o *metav1.ListOptions) {
		if k.gvr == Events {
			// only the PVCs' Events: a cluster's others are many and never shown
			o.FieldSelector = "involvedObject.kind=PersistentVolumeClaim"
		}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			narrow(&o)
			l, err := ri.List(ctx, o)
			w.mu.Lock()
			changed := (w.err == nil) != (err == nil)
			w.err = err
			w.mu.Unlock()
			if changed {
				c.notify()
			}
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			narrow(&o)
			return ri.Watch(ctx, o)
		},
	}
	w.informer = cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	// List errors are the page's notices; the reflector's own log of them would only repeat
	// them on the viewer's terminal at every retry.
	_ = w.informer.SetWatchErrorHandler(func(*cache.Reflector, error) {})
	notify := func(any) { c.notify() }
	_, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: notify, DeleteFunc: notify, UpdateFunc: func(_, n any) { c.notify() },
	})
	go w.informer.RunWithContext(ctx)
	return w
}

// Snapshot returns what the informers hold now, and the notices.
func (c *Collector) Snapshot(now time.Time) view.Input {
	in := view.Input{Now: now}
	c.mu.Lock()
	in.Notices = append(in.Notices, c.notices...)
	ks := make([]watchKey, 0, len(c.watches))
	for k := range c.watches {
		ks = append(ks, k)
	}
	ws := make([]*watched, 0, len(ks))
	sort.Slice(ks, func(i, j int) bool {
		return ks[i].gvr.String()+ks[i].namespace < ks[j].gvr.String()+ks[j].namespace
	})
	for _, k := range ks {
		ws = append(ws, c.watches[k])
	}
	c.mu.Unlock()
	for i, w := range ws {
		k := ks[i]
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		if err != nil {
			in.Notices = append(in.Notices, notice(k, err))
			continue
		}
		for _, obj := range w.informer.GetStore().List() {
			u := obj.(*unstructured.Unstructured)
			switch k.gvr {
			case Backups:
				var b velerov1.Backup
				if convert(u, &b) {
					in.Backups = append(in.Backups, b)
				}
			case PVCs:
				var p corev1.PersistentVolumeClaim
				if convert(u, &p) {
					in.PVCs = append(in.PVCs, p)
				}
			case Events:
				var e corev1.Event
				if convert(u, &e) {
					in.Events = append(in.Events, e)
				}
			case ImageStreams:
				in.ImageStreams = append(in.ImageStreams, view.ImageStream{Namespace: u.GetNamespace(), Name: u.GetName(), Annotations: u.GetAnnotations()})
			}
		}
	}
	return in
}

func convert(u *unstructured.Unstructured, into any) bool {
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into) == nil
}

// notice says what a list error hides from the viewer.
func notice(k watchKey, err error) string {
	where := "in any namespace"
	if k.namespace != "" {
		where = "in namespace " + k.namespace
	}
	what := k.gvr.GroupResource().String()
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Sprintf("You may not list %s %s: they are not shown.", what, where)
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("This cluster does not serve %s: none are shown.", what)
	}
	return fmt.Sprintf("Listing %s %s failed (retrying): %v", what, where, err)
}

func reason(err error) string {
	if apierrors.IsForbidden(err) {
		return "forbidden"
	}
	return err.Error()
}
