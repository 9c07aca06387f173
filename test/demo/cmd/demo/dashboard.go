package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ferry-dev/ferry/test/stack"
)

// dashboardAddress is where the demo serves `ferry-datamover dashboard` when the port is free.
const dashboardAddress = "127.0.0.1:8089"

// startDashboard serves the dashboard against the source cluster, as an admin would run it next
// to a migration, and returns its URL once it answers.
func startDashboard(s *stack.Stack) (string, error) {
	addr := dashboardAddress
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
	} else if l, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
		// 8089 is taken (another dashboard?): any free port will do
		addr = l.Addr().String()
		l.Close()
	}
	p, err := s.StartProcess(stack.ProcessSpec{
		Name: "dashboard",
		Path: filepath.Join(s.FerryBinDir, "ferry-datamover"),
		Args: []string{"dashboard", "--kubeconfig", s.Source.Kubeconfig, "--listen", addr},
	})
	if err != nil {
		return "", err
	}
	url := "http://" + addr + "/"
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"api/page", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return "", fmt.Errorf("the dashboard did not answer at %s: %w\n%s", url, err, p.Tail(20))
	}
	return url, nil
}
