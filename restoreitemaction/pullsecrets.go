package restoreitemaction

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ferry-dev/ferry/internal/keys"
)

// generatedPullSecret matches the pull secrets OpenShift generates for a service account,
// "<service account>-dockercfg-<5 random characters>".
var generatedPullSecret = regexp.MustCompile(`^(.+)-dockercfg-[a-z0-9]{5}$`)

// pullSecretWait bounds how long a restore waits for the target's controller to generate a
// service account's pull secret. It only waits when dropping the source's secret would leave
// other pull secrets behind: with none left, pod admission adds the service account's own
// secrets later anyway.
const pullSecretWait = 30 * time.Second

// pullSecrets swaps the source cluster's generated pull secrets for the target's.
type pullSecrets struct {
	kube kubernetes.Interface
	wait time.Duration
	poll time.Duration
	mu   sync.Mutex
	// found caches namespace/service-account → generated secret name.
	found map[string]string
}

func newPullSecrets(kube kubernetes.Interface) *pullSecrets {
	return &pullSecrets{kube: kube, wait: pullSecretWait, poll: time.Second, found: map[string]string{}}
}

// swap rewrites spec.imagePullSecrets (a pod spec, or any map with that list) for targetNS. A
// generated secret is replaced by the target service account's, or dropped when it has none
// (yet). canWait is false on clusters that never generate such secrets.
func (p *pullSecrets) swap(ctx context.Context, log logrus.FieldLogger, spec map[string]any, targetNS string, canWait bool) (bool, error) {
	list, _ := spec["imagePullSecrets"].([]any)
	var kept, generated []string
	for _, e := range list {
		name, _ := e.(map[string]any)["name"].(string)
		if generatedPullSecret.MatchString(name) {
			generated = append(generated, name)
		} else {
			kept = append(kept, name)
		}
	}
	if len(generated) == 0 {
		return false, nil
	}
	others := len(kept) > 0
	out := make([]any, 0, len(list))
	for _, e := range list {
		name, _ := e.(map[string]any)["name"].(string)
		m := generatedPullSecret.FindStringSubmatch(name)
		if m == nil {
			out = append(out, e)
			continue
		}
		target, err := p.lookup(ctx, targetNS, m[1], canWait && others)
		if err != nil {
			return false, err
		}
		if target == "" {
			log.Infof("dropping pull secret %s: service account %s/%s has no generated pull secret on this cluster", name, targetNS, m[1])
			continue
		}
		log.Infof("pull secret %s replaced by %s", name, target)
		out = append(out, map[string]any{"name": target})
	}
	if len(out) == 0 {
		delete(spec, "imagePullSecrets")
	} else {
		spec["imagePullSecrets"] = out
	}
	return true, nil
}

// lookup finds the generated pull secret of service account namespace/name on this cluster,
// waiting up to p.wait when wait is set.
func (p *pullSecrets) lookup(ctx context.Context, namespace, name string, wait bool) (string, error) {
	key := namespace + "/" + name
	p.mu.Lock()
	cached, ok := p.found[key]
	p.mu.Unlock()
	if ok {
		return cached, nil
	}
	deadline := time.Now().Add(p.wait)
	for {
		secret, err := p.current(ctx, namespace, name)
		if err != nil {
			return "", err
		}
		if secret != "" || !wait || time.Now().After(deadline) {
			if secret != "" {
				p.mu.Lock()
				p.found[key] = secret
				p.mu.Unlock()
			}
			return secret, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(p.poll):
		}
	}
}

// current reads the service account's generated pull secret: the 4.16+ annotation first, then
// its imagePullSecrets and secrets lists.
func (p *pullSecrets) current(ctx context.Context, namespace, name string) (string, error) {
	sa, err := p.kube.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading service account %s/%s: %w", namespace, name, err)
	}
	if ref := sa.Annotations[keys.InternalRegistryPullSecretRef]; ref != "" {
		return ref, nil
	}
	prefix := name + "-dockercfg-"
	for _, r := range sa.ImagePullSecrets {
		if strings.HasPrefix(r.Name, prefix) {
			return r.Name, nil
		}
	}
	for _, r := range sa.Secrets {
		if strings.HasPrefix(r.Name, prefix) {
			return r.Name, nil
		}
	}
	return "", nil
}
