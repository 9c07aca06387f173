package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

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
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(url + "api/page"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url, nil
			}
		}
	}
	return "", fmt.Errorf("the dashboard did not answer at %s:\n%s", url, p.Tail(20))
}
