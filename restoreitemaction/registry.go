package restoreitemaction

import (
	"context"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/config"
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
