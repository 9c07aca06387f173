package stack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/ferry-dev/ferry/test/stack/podrunner"
)

// startPodRunner registers the cluster's Node and starts playing kubelet for ferry's transfer
// pods (see package podrunner, the stack's one simulated part). Its log is
// logs/podrunner-<cluster>.log.
func (c *Cluster) startPodRunner(ctx context.Context) error {
	s := c.stack
	ip := s.addrs.node(c.index)
	serving, err := c.ca.issue("system:node:"+c.NodeName, []string{ip}, []string{c.NodeName}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return err
	}
	cert, err := serving.tlsCertificate()
	if err != nil {
		return err
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(c.ca.cert)
	logFile, err := os.OpenFile(filepath.Join(s.logDir, "podrunner-"+c.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var logMu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(logFile, "%s %s %s\n", time.Now().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{Verbosity: 1})
	r, err := podrunner.New(podrunner.Options{
		Client:      c.Kube,
		NodeName:    c.NodeName,
		NodeIP:      ip,
		KubeletPort: kubeletPort,
		TLS: &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    clientCAs,
			MinVersion:   tls.VersionTLS12,
		},
		PodIPs:   s.addrs.podIPs(c.index),
		Dir:      filepath.Join(c.Dir, "pods"),
		PathDirs: []string{s.FerryBinDir},
		Log:      log.WithName("podrunner"),
	})
	if err != nil {
		logFile.Close()
		return err
	}
	// The runner lives as long as the stack, not as long as the start call's context.
	runCtx, cancel := context.WithCancel(context.Background())
	if err := r.Start(runCtx); err != nil {
		cancel()
		logFile.Close()
		return err
	}
	c.runner, c.cancelRun = r, cancel
	go func() { r.Wait(); logFile.Close() }()
	return nil
}
