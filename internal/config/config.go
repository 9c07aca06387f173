// Package config reads ferry's configuration: one ConfigMap, named ferry-config, in Velero's
// namespace. Every key is optional; a missing ConfigMap means all defaults. Unknown keys and bad
// values are errors that name the key, so a typo never silently falls back to a default.
package config

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/ferry-dev/ferry/internal/keys"
	"github.com/ferry-dev/ferry/internal/version"
)

// ConfigMapName is the name of ferry's ConfigMap in Velero's namespace.
const ConfigMapName = "ferry-config"

// EndpointType is how the target's transfer server is reached from the source.
type EndpointType string

const (
	EndpointRoute        EndpointType = "Route"
	EndpointLoadBalancer EndpointType = "LoadBalancer"
	EndpointNodePort     EndpointType = "NodePort"
	EndpointClusterIP    EndpointType = "ClusterIP"
)

// Config is ferry's parsed configuration. The field comments are the documentation of the keys;
// the README's config table repeats them.
type Config struct {
	// targetKubeconfigSecret: Secret in Velero's namespace whose key "kubeconfig" reaches the
	// target cluster. Default "ferry-target".
	TargetKubeconfigSecret string
	// defaultPVAction: "copy" or "move"; move applies only to PVs whose storage the target can
	// reach (see moveDrivers), the others are copied. Default "copy".
	DefaultPVAction string
	// moveDrivers: CSI drivers whose volumes the target cluster can mount too (shared storage),
	// comma-separated. In-tree NFS PVs are always movable. Default "nfs.csi.k8s.io".
	MoveDrivers []string
	// storageClassMapping: "source=target" pairs, comma- or newline-separated. "*" as the source
	// maps every class not listed, "" (as in "=target") maps PVCs without a class.
	StorageClassMapping map[string]string
	// accessModeMapping: "ReadWriteOnce=ReadWriteMany" pairs.
	AccessModeMapping map[corev1.PersistentVolumeAccessMode]corev1.PersistentVolumeAccessMode
	// namespaceMapping: "source=target" pairs applied to transferred data; a Backup's
	// ferry.dev/namespace-mapping annotation overrides it. Use the same mapping when restoring.
	NamespaceMapping map[string]string
	// endpointType: Route, LoadBalancer, NodePort or ClusterIP. Default LoadBalancer.
	EndpointType EndpointType
	// routeSubdomain: the apps domain for Route endpoints; empty lets the router assign hosts.
	RouteSubdomain string
	// nodePortAddress: the address a NodePort endpoint is reached at; default a node's InternalIP.
	NodePortAddress string
	// transferImage: image of the transfer pods (rsync, stunnel and ferry-datamover).
	TransferImage string
	// concurrency: transfers running at once across PVCs. Default 4.
	Concurrency int
	// streams: parallel rsync streams per transfer. Default 4.
	Streams int
	// bwlimitKBps: per-transfer bandwidth limit in KiB/s, 0 for none.
	BwLimitKBps int
	// verify: "true" makes every final verify its copy, every file compared by content on both
	// sides (per PVC: ferry.dev/verify; per Backup, also for stages: ferry.dev/verify).
	Verify bool
	// allowOverwrite: "true" lets transfers fill target PVCs, and image copies push into target
	// image streams, that hold data ferry did not put there. Default false: such targets are
	// refused. A Backup's ferry.dev/allow-overwrite overrides it.
	AllowOverwrite bool
	// transferRunAsRoot: run transfer pods as root (with a few file capabilities) so ownership
	// is preserved. "false" runs them as transferRunAsUser and keeps only what that user can set.
	TransferRunAsRoot bool
	// transferRunAsUser: UID for non-root transfer pods. Default 65532.
	TransferRunAsUser int64
	// transferCPU / transferMemory: requests of each transfer pod. Defaults 100m and 256Mi.
	TransferCPU    resource.Quantity
	TransferMemory resource.Quantity
	// transferCPULimit / transferMemoryLimit: limits of each transfer pod; zero for none (the
	// default). A limit is at least its request.
	TransferCPULimit    resource.Quantity
	TransferMemoryLimit resource.Quantity
	// transferNodeSelector ("key=value,…"), transferTolerations and transferAffinity (YAML or
	// JSON, as in a pod spec): where transfer pods run, on both clusters (e.g. infra or storage
	// nodes with taints). A client pod of a volume an app has mounted also runs on that app's
	// node: the selector and affinity must allow it.
	TransferNodeSelector map[string]string
	TransferTolerations  []corev1.Toleration
	TransferAffinity     *corev1.Affinity
	// prepareTimeout: how long a transfer may take to get its target ready (target namespace and
	// PVC, server pod running, endpoint address). Default 10m.
	PrepareTimeout time.Duration
	// quiesceTimeout: how long a final transfer waits for the app's pods to stop. Default 10m.
	QuiesceTimeout time.Duration
	// quiesceScope: what a final stops on the source: "volumes" (the workloads that mount a
	// migrated PVC) or "namespace" (every workload of each namespace with a migrated PVC).
	// Default "volumes".
	QuiesceScope string
	// stallTimeout: how long a copy may go without progress (bytes or files) before its client
	// pod is stopped and another attempt starts. Default 5m.
	StallTimeout time.Duration
	// keepNamespaceNodeSelector: "true" carries a namespace's openshift.io/node-selector to the
	// target as it is; by default a migration backup leaves it out (source node labels rarely
	// match the target's, and a selector no node matches keeps every pod Pending).
	KeepNamespaceNodeSelector bool
	// keepQuiescedOnFailure: "true" leaves an app quiesced when its final transfer does not
	// complete (failed, cancelled, replaced, its Backup deleted); by default ferry brings it back.
	KeepQuiescedOnFailure bool
	// imageCopy: "false" turns off image-stream copies. Default true.
	ImageCopy bool
	// internalRegistry: this cluster's internal registry host as it appears in image references,
	// for clusters where ferry cannot discover it (plain Kubernetes). Each cluster's Velero reads
	// its own ferry-config: on the source it is the registry images are copied from and rewritten
	// away from, on the target the one they are rewritten to.
	InternalRegistry string
	// targetRegistryEndpoint: host[:port] where the source pushes images for the target (e.g. the
	// target registry's external route); default: discovered through the target kubeconfig.
	TargetRegistryEndpoint string
	// sourceRegistrySecret / targetRegistrySecret: Secrets (type kubernetes.io/dockerconfigjson, or
	// keys "username" and "password"/"token") with registry credentials. Default: short-lived
	// tokens of the ferry-registry service accounts (imagecopy.RegistryServiceAccount).
	SourceRegistrySecret string
	TargetRegistrySecret string
	// registryCASecret: Secret whose key "ca.crt" is trusted for registry TLS.
	RegistryCASecret string
	// registryInsecure: "true" skips registry TLS verification (explicit opt-in only).
	RegistryInsecure bool
}

// Defaults returns the configuration used when no ConfigMap exists.
func Defaults() *Config {
	return &Config{
		TargetKubeconfigSecret: "ferry-target",
		DefaultPVAction:        keys.PVActionCopy,
		QuiesceScope:           keys.QuiesceScopeVolumes,
		MoveDrivers:            []string{"nfs.csi.k8s.io"},
		StorageClassMapping:    map[string]string{},
		AccessModeMapping:      map[corev1.PersistentVolumeAccessMode]corev1.PersistentVolumeAccessMode{},
		NamespaceMapping:       map[string]string{},
		EndpointType:           EndpointLoadBalancer,
		TransferImage:          DefaultTransferImage(),
		Concurrency:            4,
		Streams:                4,
		TransferRunAsRoot:      true,
		TransferRunAsUser:      65532,
		TransferCPU:            resource.MustParse("100m"),
		TransferMemory:         resource.MustParse("256Mi"),
		PrepareTimeout:         10 * time.Minute,
		QuiesceTimeout:         10 * time.Minute,
		StallTimeout:           5 * time.Minute,
		ImageCopy:              true,
	}
}

// DefaultTransferImage is the transfer image matching this build.
func DefaultTransferImage() string {
	tag := version.Version
	if tag == "" || tag == "dev" {
		tag = "latest"
	}
	return "ghcr.io/ferry-dev/ferry-datamover:" + tag
}

// configError is a mistake in ferry's configuration (ferry-config, a Secret it names):
// retrying cannot help, someone has to fix it.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// Error marks err as a mistake in ferry's configuration.
func Error(err error) error { return configError{err} }

// IsError reports whether err is, or wraps, a mistake in ferry's configuration.
func IsError(err error) bool { return errors.As(err, &configError{}) }

// Load reads the ConfigMap from namespace; a missing ConfigMap yields Defaults. A malformed one
// is an Error.
func Load(ctx context.Context, client kubernetes.Interface, namespace string) (*Config, error) {
	cm, err := client.CoreV1().ConfigMaps(namespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return Defaults(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, ConfigMapName, err)
	}
	c, err := Parse(cm.Data)
	if err != nil {
		return nil, Error(fmt.Errorf("ConfigMap %s/%s: %w", namespace, ConfigMapName, err))
	}
	return c, nil
}

// setter parses one key's value into c.
type setter func(c *Config, v string) error

var setters = map[string]setter{
	"targetKubeconfigSecret": str(func(c *Config) *string { return &c.TargetKubeconfigSecret }),
	"defaultPVAction": func(c *Config, v string) error {
		if v != keys.PVActionCopy && v != keys.PVActionMove {
			return fmt.Errorf("want %q or %q", keys.PVActionCopy, keys.PVActionMove)
		}
		c.DefaultPVAction = v
		return nil
	},
	"quiesceScope": func(c *Config, v string) (err error) {
		c.QuiesceScope, err = ParseQuiesceScope(v)
		return err
	},
	"moveDrivers": func(c *Config, v string) error {
		c.MoveDrivers = List(v)
		return nil
	},
	"storageClassMapping": func(c *Config, v string) (err error) {
		c.StorageClassMapping, err = Mapping(v, "=", true)
		return err
	},
	"accessModeMapping": func(c *Config, v string) error {
		m, err := Mapping(v, "=", false)
		if err != nil {
			return err
		}
		for from, to := range m {
			f, err := ParseAccessMode(from)
			if err != nil {
				return err
			}
			t, err := ParseAccessMode(to)
			if err != nil {
				return err
			}
			c.AccessModeMapping[f] = t
		}
		return nil
	},
	"namespaceMapping": func(c *Config, v string) (err error) {
		c.NamespaceMapping, err = Mapping(v, "=", false)
		return err
	},
	"endpointType": func(c *Config, v string) error {
		switch t := EndpointType(v); t {
		case EndpointRoute, EndpointLoadBalancer, EndpointNodePort, EndpointClusterIP:
			c.EndpointType = t
			return nil
		}
		return fmt.Errorf("want one of Route, LoadBalancer, NodePort, ClusterIP")
	},
	"routeSubdomain":  str(func(c *Config) *string { return &c.RouteSubdomain }),
	"nodePortAddress": str(func(c *Config) *string { return &c.NodePortAddress }),
	"transferImage":   str(func(c *Config) *string { return &c.TransferImage }),
	"concurrency":     positive(func(c *Config) *int { return &c.Concurrency }, 1),
	"streams":         positive(func(c *Config) *int { return &c.Streams }, 1),
	"bwlimitKBps":     positive(func(c *Config) *int { return &c.BwLimitKBps }, 0),
	"verify":          boolean(func(c *Config) *bool { return &c.Verify }),
	"allowOverwrite":  boolean(func(c *Config) *bool { return &c.AllowOverwrite }),
	"transferRunAsRoot": boolean(func(c *Config) *bool {
		return &c.TransferRunAsRoot
	}),
	"transferRunAsUser": func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("want a UID (a non-negative integer)")
		}
		c.TransferRunAsUser = n
		return nil
	},
	"transferCPU":         quantity(func(c *Config) *resource.Quantity { return &c.TransferCPU }),
	"transferMemory":      quantity(func(c *Config) *resource.Quantity { return &c.TransferMemory }),
	"transferCPULimit":    quantity(func(c *Config) *resource.Quantity { return &c.TransferCPULimit }),
	"transferMemoryLimit": quantity(func(c *Config) *resource.Quantity { return &c.TransferMemoryLimit }),
	"transferNodeSelector": func(c *Config, v string) error {
		m := map[string]string{}
		for _, item := range List(v) {
			k, val, ok := strings.Cut(item, "=")
			k, val = strings.TrimSpace(k), strings.TrimSpace(val)
			if !ok {
				return fmt.Errorf("%q: want key=value (node labels; the value may be empty)", item)
			}
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(val)...); len(errs) > 0 {
				return fmt.Errorf("label %s=%s: %s", k, val, strings.Join(errs, "; "))
			}
			m[k] = val
		}
		c.TransferNodeSelector = m
		return nil
	},
	"transferTolerations": func(c *Config, v string) error {
		var ts []corev1.Toleration
		if err := yaml.UnmarshalStrict([]byte(v), &ts); err != nil {
			return fmt.Errorf("want a YAML or JSON list of tolerations as in a pod spec: %v", err)
		}
		for _, t := range ts {
			switch t.Operator {
			case "", corev1.TolerationOpEqual, corev1.TolerationOpExists:
			default:
				return fmt.Errorf("toleration %q: operator %q: want Equal or Exists", t.Key, t.Operator)
			}
			switch t.Effect {
			case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			default:
				return fmt.Errorf("toleration %q: effect %q: want NoSchedule, PreferNoSchedule or NoExecute", t.Key, t.Effect)
			}
		}
		c.TransferTolerations = ts
		return nil
	},
	"transferAffinity": func(c *Config, v string) error {
		var a corev1.Affinity
		if err := yaml.UnmarshalStrict([]byte(v), &a); err != nil {
			return fmt.Errorf("want YAML or JSON of an affinity as in a pod spec (nodeAffinity, podAffinity, podAntiAffinity): %v", err)
		}
		c.TransferAffinity = &a
		return nil
	},
	"prepareTimeout":            duration(func(c *Config) *time.Duration { return &c.PrepareTimeout }),
	"quiesceTimeout":            duration(func(c *Config) *time.Duration { return &c.QuiesceTimeout }),
	"stallTimeout":              duration(func(c *Config) *time.Duration { return &c.StallTimeout }),
	"keepQuiescedOnFailure":     boolean(func(c *Config) *bool { return &c.KeepQuiescedOnFailure }),
	"keepNamespaceNodeSelector": boolean(func(c *Config) *bool { return &c.KeepNamespaceNodeSelector }),
	"imageCopy":                 boolean(func(c *Config) *bool { return &c.ImageCopy }),
	"internalRegistry":          str(func(c *Config) *string { return &c.InternalRegistry }),
	"targetRegistryEndpoint":    str(func(c *Config) *string { return &c.TargetRegistryEndpoint }),
	"sourceRegistrySecret":      str(func(c *Config) *string { return &c.SourceRegistrySecret }),
	"targetRegistrySecret":      str(func(c *Config) *string { return &c.TargetRegistrySecret }),
	"registryCASecret":          str(func(c *Config) *string { return &c.RegistryCASecret }),
	"registryInsecure":          boolean(func(c *Config) *bool { return &c.RegistryInsecure }),
}

// Keys lists every key the ConfigMap may hold, sorted.
func Keys() []string {
	out := make([]string, 0, len(setters))
	for k := range setters {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Parse builds a Config from a ConfigMap's data. Errors are collected for every bad key.
func Parse(data map[string]string) (*Config, error) {
	c := Defaults()
	var errs []string
	for _, k := range sortedKeys(data) {
		set, ok := setters[k]
		if !ok {
			errs = append(errs, fmt.Sprintf("unknown key %q (known keys: %s)", k, strings.Join(Keys(), ", ")))
			continue
		}
		if err := set(c, strings.TrimSpace(data[k])); err != nil {
			errs = append(errs, fmt.Sprintf("key %q: value %q: %v", k, data[k], err))
		}
	}
	for _, l := range []struct {
		key            string
		limit, request resource.Quantity
	}{{"transferCPULimit", c.TransferCPULimit, c.TransferCPU}, {"transferMemoryLimit", c.TransferMemoryLimit, c.TransferMemory}} {
		if !l.limit.IsZero() && l.limit.Cmp(l.request) < 0 {
			errs = append(errs, fmt.Sprintf("key %q: %s is below the request %s", l.key, l.limit.String(), l.request.String()))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// TargetStorageClass maps a source storage class ("" for none) through StorageClassMapping.
// ok is false when no mapping applies (the class is kept as is).
func (c *Config) TargetStorageClass(source string) (target string, ok bool) {
	if t, ok := c.StorageClassMapping[source]; ok {
		return t, true
	}
	if t, ok := c.StorageClassMapping["*"]; ok && source != "" {
		return t, true
	}
	return source, false
}

// TargetAccessModes maps each access mode through AccessModeMapping, keeping order and
// dropping duplicates.
func (c *Config) TargetAccessModes(source []corev1.PersistentVolumeAccessMode) []corev1.PersistentVolumeAccessMode {
	var out []corev1.PersistentVolumeAccessMode
	seen := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range source {
		if t, ok := c.AccessModeMapping[m]; ok {
			m = t
		}
		if !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}

// IsMoveDriver reports whether a CSI driver's volumes can be mounted by the target too.
func (c *Config) IsMoveDriver(driver string) bool {
	for _, d := range c.MoveDrivers {
		if d == driver {
			return true
		}
	}
	return false
}

// ParseAccessMode accepts the full names and the kubectl short forms (RWO, ROX, RWX, RWOP).
func ParseAccessMode(s string) (corev1.PersistentVolumeAccessMode, error) {
	switch strings.TrimSpace(s) {
	case "ReadWriteOnce", "RWO":
		return corev1.ReadWriteOnce, nil
	case "ReadOnlyMany", "ROX":
		return corev1.ReadOnlyMany, nil
	case "ReadWriteMany", "RWX":
		return corev1.ReadWriteMany, nil
	case "ReadWriteOncePod", "RWOP":
		return corev1.ReadWriteOncePod, nil
	}
	return "", fmt.Errorf("unknown access mode %q (want ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod)", s)
}

// ParseAccessModes parses a comma-separated list of access modes.
func ParseAccessModes(s string) ([]corev1.PersistentVolumeAccessMode, error) {
	var out []corev1.PersistentVolumeAccessMode
	for _, item := range List(s) {
		m, err := ParseAccessMode(item)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no access modes in %q", s)
	}
	return out, nil
}

// FormatAccessModes is the inverse of ParseAccessModes.
func FormatAccessModes(modes []corev1.PersistentVolumeAccessMode) string {
	return strings.Join(AccessModeStrings(modes), ",")
}

// AccessModeStrings is modes as plain strings (unstructured objects hold them so).
func AccessModeStrings(modes []corev1.PersistentVolumeAccessMode) []string {
	s := make([]string, len(modes))
	for i, m := range modes {
		s[i] = string(m)
	}
	return s
}

// List splits on commas and newlines, trimming blanks.
func List(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Mapping parses "a<sep>b" pairs separated by commas or newlines. allowEmptySource permits "=b".
func Mapping(s, sep string, allowEmptySource bool) (map[string]string, error) {
	m := map[string]string{}
	for _, item := range List(s) {
		from, to, ok := strings.Cut(item, sep)
		from, to = strings.TrimSpace(from), strings.TrimSpace(to)
		if !ok || to == "" || (from == "" && !allowEmptySource) {
			return nil, fmt.Errorf("entry %q is not of the form source%starget", item, sep)
		}
		if _, dup := m[from]; dup {
			return nil, fmt.Errorf("source %q is mapped twice", from)
		}
		m[from] = to
	}
	return m, nil
}

// ParseNamespaceMapping parses the Backup annotation form "src:dst,src2:dst2".
func ParseNamespaceMapping(s string) (map[string]string, error) {
	return Mapping(s, ":", false)
}

func str(field func(*Config) *string) setter {
	return func(c *Config, v string) error {
		*field(c) = v
		return nil
	}
}

// ParseQuiesceScope checks a quiesce scope (ferry-config quiesceScope or a Backup's
// ferry.dev/quiesce-scope).
func ParseQuiesceScope(v string) (string, error) {
	if v != keys.QuiesceScopeVolumes && v != keys.QuiesceScopeNamespace {
		return "", fmt.Errorf("want %q or %q", keys.QuiesceScopeVolumes, keys.QuiesceScopeNamespace)
	}
	return v, nil
}

func boolean(field func(*Config) *bool) setter {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		*field(c) = b
		return nil
	}
}

func positive(field func(*Config) *int, min int) setter {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			return fmt.Errorf("want an integer ≥ %d", min)
		}
		*field(c) = n
		return nil
	}
}

func duration(field func(*Config) *time.Duration) setter {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 90s or 15m")
		}
		*field(c) = d
		return nil
	}
}

func quantity(field func(*Config) *resource.Quantity) setter {
	return func(c *Config, v string) error {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("want a Kubernetes quantity: %v", err)
		}
		*field(c) = q
		return nil
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
