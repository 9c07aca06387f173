package stack

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// hostPathProvisionerRoot is where kube-controller-manager's host-path provisioner creates
// volumes (a fixed path in Kubernetes, shared by every stack on the machine; each volume is a
// folder named by a UUID).
const hostPathProvisionerRoot = "/tmp/hostpath_pv"

// kcmControllers are the controllers a migration touches: PV binding and host-path
// provisioning, the protection finalizers (without their controllers namespaces never finish
// deleting), garbage collection, namespaces, workloads, service accounts and endpoints, and node
// lifecycle (not-ready taints and evictions follow the kubelet's heartbeats).
var kcmControllers = []string{
	"persistentvolume-binder-controller",
	"persistentvolume-protection-controller",
	"persistentvolumeclaim-protection-controller",
	"persistentvolume-expander-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"deployment-controller",
	"replicaset-controller",
	"replicationcontroller-controller",
	"statefulset-controller",
	"daemonset-controller",
	"job-controller",
	"cronjob-controller",
	"ttl-after-finished-controller",
	"pod-garbage-collector-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"resourcequota-controller",
	"node-lifecycle-controller",
}

func (c *Cluster) startControllerManager(ctx context.Context) error {
	s := c.stack
	ip := s.addrs.kcm(c.index)
	pki := filepath.Join(c.Dir, "pki")
	p, err := s.StartProcess(ProcessSpec{
		Name: "kube-controller-manager-" + c.Name,
		Path: s.tools.kcm,
		Args: []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--bind-address=" + ip, "--secure-port=" + fmt.Sprint(kcmPort),
			"--cert-dir=" + filepath.Join(c.Dir, "kcm"),
			"--leader-elect=false",
			"--controllers=" + strings.Join(kcmControllers, ","),
			"--enable-hostpath-provisioner",
			"--service-account-private-key-file=" + filepath.Join(pki, "sa.key"),
			"--root-ca-file=" + filepath.Join(pki, "ca.crt"),
			"--use-service-account-credentials=false",
			"--service-cluster-ip-range=" + c.serviceCIDR(),
			"--v=1",
		},
	})
	if err != nil {
		return err
	}
	c.kcm = p
	// Its serving certificate is self-signed (in --cert-dir); /healthz is open by default.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		return httpCheck(ctx, hc, "https://"+hostPort(ip, kcmPort)+"/healthz", nil, "")
	})
}
