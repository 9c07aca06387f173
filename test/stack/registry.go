package stack

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// startRegistry runs Debian's docker-registry (distribution) as the cluster's internal
// registry: plain HTTP, storage in the cluster's folder, deletes allowed, listening on
// RegistryFromHost, and a relay at RegistryHost in the link network's namespace for nodes and
// pods.
func (c *Cluster) startRegistry(ctx context.Context) error {
	s := c.stack
	dir := filepath.Join(c.Dir, "registry")
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), c.RegistryFromHost)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return err
	}
	p, err := s.StartProcess(ProcessSpec{
		Name: "registry-" + c.Name,
		Path: s.tools.registry,
		Args: []string{"serve", configPath},
	})
	if err != nil {
		return err
	}
	c.registry = p
	if err := waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		return httpCheck(ctx, http.DefaultClient, "http://"+c.RegistryFromHost+"/v2/", nil, "")
	}); err != nil {
		return err
	}
	c.registryRelay, err = startRelayRoutes(s.nodeNet.netNS, []relayRoute{{listen: c.RegistryHost, target: c.RegistryFromHost}})
	return err
}
