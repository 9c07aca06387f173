package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/ferry-dev/ferry/internal/kube"
)

// clusterFlags are the flags of every command that talks to a cluster.
type clusterFlags struct {
	kubeconfig, context string
}

func (c *clusterFlags) bind(f *pflag.FlagSet, what string) {
	f.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig of the "+what+" (default: $KUBECONFIG, else in-cluster)")
	f.StringVar(&c.context, "context", "", "kubeconfig context to use (default: its current one)")
}

// clients builds the clients, with Velero's namespace.
func (c *clusterFlags) clients(veleroNamespace string) (*kube.Clients, error) {
	cfg, err := kube.RESTConfig(c.kubeconfig, c.context)
	if err != nil {
		return nil, err
	}
	return kube.NewClients(cfg, veleroNamespace)
}

// viewer loads the kubeconfig as kubectl does (explicit file, $KUBECONFIG, ~/.kube/config; the
// context's namespace) and returns clients acting with that person's own credentials.
func (c *clusterFlags) viewer() (kubernetes.Interface, dynamic.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: c.context})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	return kube, dyn, ns, nil
}

// logFlags are the logging flags of every long-running command; the logs go to stderr (stdout
// may carry machine-readable output).
type logFlags struct {
	level, format string
}

func (l *logFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) validate() error {
	if _, err := logrus.ParseLevel(l.level); err != nil {
		return fmt.Errorf("--log-level: want debug, info, warn or error, not %q", l.level)
	}
	if l.format != "text" && l.format != "json" {
		return fmt.Errorf("--log-format: want text or json, not %q", l.format)
	}
	return nil
}

// logrus is the data plane's logger.
func (l *logFlags) logrus() *logrus.Logger {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	if l.format == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	}
	if lvl, err := logrus.ParseLevel(l.level); err == nil {
		log.SetLevel(lvl)
	}
	return log
}

// logr is the controller's logger (controller-runtime's zap).
func (l *logFlags) logr() logr.Logger {
	lvl := zapcore.InfoLevel
	_ = lvl.UnmarshalText([]byte(l.level))
	encoder := zap.ConsoleEncoder()
	if l.format == "json" {
		encoder = zap.JSONEncoder()
	}
	return zap.New(zap.Level(lvl), zap.WriteTo(os.Stderr), encoder)
}

// output is -o: text for people, json for programs.
type output string

func (o *output) bind(f *pflag.FlagSet) {
	*o = "text"
	f.StringVarP((*string)(o), "output", "o", "text", "output format: text or json")
}

func (o output) validate() error {
	if o != "text" && o != "json" {
		return fmt.Errorf("--output: want text or json, not %q", string(o))
	}
	return nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
