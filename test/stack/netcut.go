package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// CutConnections drops every TCP packet to and from addr (host:port), as a failed link or a
// firewall change between two clusters would: connections hang rather than being refused. The
// cut lasts until the returned heal is called, or until Stop. Only the pod-runner form: its
// pods share this machine's network, so the rules go in its OUTPUT chain (loopback traffic
// passes there both ways); real nodes' pods are in namespaces of their own.
func (s *Stack) CutConnections(ctx context.Context, addr string) (heal func() error, err error) {
	if s.RealNodes() {
		return nil, fmt.Errorf("CutConnections: only on the pod-runner stack")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	rules := [][]string{
		{"OUTPUT", "-p", "tcp", "-d", host, "--dport", port, "-j", "DROP"},
		{"OUTPUT", "-p", "tcp", "-s", host, "--sport", port, "-j", "DROP"},
	}
	var added [][]string
	var once sync.Once
	var healErr error
	heal = func() error {
		once.Do(func() {
			var errs []error
			for _, r := range added {
				if _, err := run(context.Background(), nil, progIptables, append([]string{"-w", "-D"}, r...)...); err != nil {
					errs = append(errs, err)
				}
			}
			healErr = errors.Join(errs...)
		})
		return healErr
	}
	for _, r := range rules {
		if _, err := run(ctx, nil, progIptables, append([]string{"-w", "-I"}, r...)...); err != nil {
			return nil, errors.Join(err, heal())
		}
		added = append(added, r)
	}
	s.mu.Lock()
	s.cuts = append(s.cuts, heal)
	s.mu.Unlock()
	s.logf("stack: connections to and from %s cut", addr)
	return heal, nil
}

// healCuts ends the cuts CutConnections made that are still in place.
func (s *Stack) healCuts() error {
	s.mu.Lock()
	cuts := s.cuts
	s.cuts = nil
	s.mu.Unlock()
	var errs []error
	for _, heal := range cuts {
		errs = append(errs, heal())
	}
	return errors.Join(errs...)
}
