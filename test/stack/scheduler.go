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
