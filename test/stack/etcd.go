package stack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// startEtcd runs one etcd for the stack; each cluster's API server keeps its objects under its
// own key prefix.
func (s *Stack) startEtcd(ctx context.Context) error {
	ip := s.addrs.etcd()
	client, peer := "http://"+hostPort(ip, etcdClientPort), "http://"+hostPort(ip, etcdPeerPort)
	p, err := s.StartProcess(ProcessSpec{
		Name: "etcd",
		Path: s.tools.etcd,
		Args: []string{
			"--name=ferry", "--data-dir=" + filepath.Join(s.Dir, "etcd"),
			"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=ferry=" + peer,
			// The stack is disposable: fewer snapshots and a larger quota keep 5,000-object
			// namespaces quick.
			"--snapshot-count=50000", "--quota-backend-bytes=8589934592",
			// One member, so no election to win: a long election timeout only lengthens etcd's
			// request timeout (5 s + 2 × it). At 1 s, writes timed out ("etcdserver: request
			// timed out") while a test wrote gigabytes to the same disk and fsyncs queued.
			"--heartbeat-interval=500", "--election-timeout=5000",
			"--log-level=warn",
		},
	})
	if err != nil {
		return err
	}
	s.etcd = p
	return waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		return httpCheck(ctx, http.DefaultClient, client+"/health", nil, `"health":"true"`)
	})
}

func (s *Stack) etcdURL() string { return "http://" + hostPort(s.addrs.etcd(), etcdClientPort) }

// httpCheck GETs url and wants 200 and, if contains is not empty, that text in the body.
func httpCheck(ctx context.Context, c *http.Client, url string, header http.Header, contains string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if contains != "" && !strings.Contains(string(body), contains) {
		return fmt.Errorf("GET %s: body %q lacks %q", url, strings.TrimSpace(string(body)), contains)
	}
	return nil
}
