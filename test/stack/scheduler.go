package stack

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"
)

const schedulerPort = 10259

// startScheduler runs kube-scheduler for the cluster, which binds pods to its node. Its serving
// certificate is self-signed; /healthz is open by default.
func (c *Cluster) startScheduler(ctx context.Context) error {
	s := c.stack
	ip := s.addrs.scheduler(c.index)
	p, err := s.StartProcess(ProcessSpec{
		Name: "kube-scheduler-" + c.Name,
		Path: s.tools.scheduler,
		Args: []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig,
			"--bind-address=" + ip, "--secure-port=" + fmt.Sprint(schedulerPort),
			"--leader-elect=false",
			// After its API server comes back, the scheduler can see a pod's bound PVC before the
			// PV, call the pod unschedulable, and (seen once in TestStackFaults) miss the PV's
			// arrival; such a pod waits for this flush, 5 min by default, longer than ferry's
			// prepareTimeout. Deprecated but still honoured in v1.33.
			"--pod-max-in-unschedulable-pods-duration=30s",
			"--v=1",
		},
	})
	if err != nil {
		return err
	}
	c.scheduler = p
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		return httpCheck(ctx, hc, "https://"+hostPort(ip, schedulerPort)+"/healthz", nil, "")
	})
}
