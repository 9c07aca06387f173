package restoreitemaction

import (
	"context"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/config"
	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/kube"
)

// imageRewrite maps image references from the source cluster's internal registry to the
// target's, following the restore's namespace mapping ("<from>/<ns>/<name>…" becomes
// "<to>/<mapped ns>/<name>…"; tag or digest kept: images are copied by digest).
type imageRewrite struct {
	from, to string
	nsMap    map[string]string
}

// image returns the rewritten reference and whether it changed.
func (r imageRewrite) image(ref string) (string, bool) {
	if r.from == "" || r.to == "" {
		return ref, false
	}
	rest, ok := strings.CutPrefix(ref, r.from+"/")
	if !ok {
		return ref, false
	}
	ns, remainder, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || remainder == "" {
		return ref, false
	}
	if m, ok := r.nsMap[ns]; ok {
		ns = m
	}
	out := r.to + "/" + ns + "/" + remainder
	return out, out != ref
}

// active reports whether both registries are known, i.e. whether ferry rewrites references.
func (r imageRewrite) active() bool { return r.from != "" && r.to != "" }

// once rewrites ref unless a restore action that ran before ferry's changed it from backedUp, the
// same field in the backup (see once): openshift-velero-plugin, when it runs first, rewrites
// the same references, and with the same registry host on both clusters ferry would match its
// output again and map the namespace a second time.
func (r imageRewrite) once(log logrus.FieldLogger, ref, backedUp string) (string, bool) {
	out, changed := r.image(ref)
	if !changed {
		return ref, false
	}
	if ref != backedUp {
		log.Infof("image %s left as it is: a restore action that ran before ferry's (openshift-velero-plugin's, say) changed it from %q", ref, backedUp)
		return ref, false
	}
	return out, true
}

// dropOVPRegistryStamp removes openshift-velero-plugin's source-registry stamp from an item whose
// image references ferry rewrites: without it OVP's image swap does nothing, so when OVP runs
// after ferry it leaves the references ferry wrote alone.
func dropOVPRegistryStamp(u *unstructured.Unstructured, rw imageRewrite) {
	ann := u.GetAnnotations()
	if _, ok := ann[keys.OVPBackupRegistryHostname]; !ok || !rw.active() {
		return
	}
	delete(ann, keys.OVPBackupRegistryHostname)
	if len(ann) == 0 {
		ann = nil
	}
	u.SetAnnotations(ann)
}

// targetRegistry finds this (the target) cluster's internal registry once per plugin process:
// the ferry-config key internalRegistry, else discovery. "" when there is none.
func targetRegistry(log logrus.FieldLogger, clients *kube.Clients, cfg func() (*config.Config, error)) func() string {
	return sync.OnceValue(func() string {
		override := ""
		if c, err := cfg(); err != nil {
			log.WithError(err).Warn("ferry-config is invalid; discovering the internal registry instead")
		} else {
			override = c.InternalRegistry
		}
		host, err := imagecopy.InternalRegistry(context.Background(), clients, override)
		if err != nil {
			log.WithError(err).Warn("could not discover this cluster's internal registry; image references are left as they are")
			return ""
		}
		return host
	})
}
