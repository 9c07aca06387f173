package stack

import (
	"context"
	"errors"
	"net"
	"sync"
)

// CutConnections drops every TCP packet of connections to addr (host:port: a pod, ClusterIP,
// NodePort or LoadBalancer address), both ways, as a failed link or a firewall change between
// two clusters would: connections hang rather than being refused. The rules go in the FORWARD
// chain of both nodes' namespaces and match conntrack's original destination, so they hold
// before and after kube-proxy's DNAT. The cut lasts until the returned heal is called, or until
// Stop.
func (s *Stack) CutConnections(ctx context.Context, addr string) (heal func() error, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var rules [][]string
	for _, ns := range s.nodeNet.nodeNS {
		rules = append(rules, []string{"netns", "exec", ns, progIptables, "-w", "%s", "FORWARD", "-p", "tcp",
			"-m", "conntrack", "--ctorigdst", host, "--ctorigdstport", port, "-j", "DROP"})
	}
	rule := func(r []string, op string) []string {
		out := append([]string(nil), r...)
		out[5] = op
		return out
	}
	var added [][]string
	var once sync.Once
	var healErr error
	heal = func() error {
		once.Do(func() {
			var errs []error
			for _, r := range added {
				if _, err := run(context.Background(), nil, progIP, rule(r, "-D")...); err != nil {
					errs = append(errs, err)
				}
			}
			healErr = errors.Join(errs...)
		})
		return healErr
	}
	for _, r := range rules {
		if _, err := run(ctx, nil, progIP, rule(r, "-I")...); err != nil {
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
