package podrunner

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeReadiness runs a container's readiness probe while its process p runs, flipping the
// container's ready flag as kubelet does (successThreshold/failureThreshold respected).
func (w *podWorker) probeReadiness(ctx context.Context, cr *containerRun, p *process) {
	pr := cr.spec.ReadinessProbe
	period := seconds(pr.PeriodSeconds, 10)
	timeout := seconds(pr.TimeoutSeconds, 1)
	success, failure := max(pr.SuccessThreshold, 1), max(pr.FailureThreshold, 3)
	select {
	case <-p.done:
		return
	case <-time.After(seconds(pr.InitialDelaySeconds, 0)):
	}
	var okRun, failRun int32
	for {
		err := w.probe(ctx, cr, p, pr, timeout)
		if err == nil {
			okRun, failRun = okRun+1, 0
		} else {
			okRun, failRun = 0, failRun+1
		}
		w.mu.Lock()
		changed := false
		if cr.proc == p {
			switch {
			case !cr.ready && okRun >= success:
				cr.ready, changed = true, true
			case cr.ready && failRun >= failure:
				cr.ready, changed = false, true
			}
		}
		w.mu.Unlock()
		if changed {
			w.log.Info("readiness changed", "container", cr.spec.Name, "ready", err == nil, "probeError", fmt.Sprint(err))
			w.writeStatus(ctx)
			w.r.queue.Add(servicesKeyPrefix + w.namespace)
		}
		select {
		case <-p.done:
			return
		case <-time.After(period):
		}
	}
}

func seconds(v, def int32) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

// probe runs one probe against the pod's address (tcpSocket, httpGet) or inside the
// container's namespaces (exec).
func (w *podWorker) probe(ctx context.Context, cr *containerRun, p *process, pr *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ip := w.address()
	switch {
	case pr.TCPSocket != nil:
		port, err := resolvePort(pr.TCPSocket.Port, cr.spec)
		if err != nil {
			return err
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return c.Close()
	case pr.HTTPGet != nil:
		port, err := resolvePort(pr.HTTPGet.Port, cr.spec)
		if err != nil {
			return err
		}
		scheme := "http"
		if pr.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(ip, strconv.Itoa(port)), pr.HTTPGet.Path), nil)
		if err != nil {
			return err
		}
		for _, h := range pr.HTTPGet.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		// kubelet does not verify a probed server's certificate either.
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe: %s", resp.Status)
		}
		return nil
	case pr.Exec != nil:
		pid := p.pid1()
		if pid == 0 {
			return fmt.Errorf("exec probe: container process not found")
		}
		env, err := w.containerEnv(ctx, cr.spec)
		if err != nil {
			return err
		}
		args := append([]string{"--target", strconv.Itoa(pid), "--mount", "--pid", "--"}, pr.Exec.Command...)
		cmd := exec.CommandContext(ctx, "nsenter", args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("exec probe: %v: %s", err, out)
		}
		return nil
	}
	return fmt.Errorf("readiness probe of container %q: no handler the pod runner supports", cr.spec.Name)
}

// resolvePort turns a probe's port (number or container port name) into a number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("container %q has no port named %q", c.Name, p.StrVal)
}
