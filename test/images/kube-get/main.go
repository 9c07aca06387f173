// Command kube-get GETs one API path with client-go's in-cluster configuration (the pod's
// service-account token, the cluster CA and the KUBERNETES_SERVICE_HOST/PORT of the
// "kubernetes" Service) and prints the body: the way ferry's data mover reaches the API from a
// pod. It exits 1 on any error, with the reason on stderr.
//
//	kube-get /api/v1/namespaces/NS/configmaps/NAME
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"

	"k8s.io/client-go/rest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-get API-PATH")
		os.Exit(2)
	}
	if err := get(os.Args[1], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kube-get:", err)
		os.Exit(1)
	}
}

func get(apiPath string, out io.Writer) error {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	resp, err := hc.Get(cfg.Host + apiPath)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", apiPath, resp.Status, body)
	}
	_, err = io.Copy(out, resp.Body)
	return err
}
