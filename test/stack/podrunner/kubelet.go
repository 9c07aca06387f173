package podrunner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// serveKubelet serves the part of kubelet's API the API server proxies to for ferry's pods:
// container logs. The API server authenticates with its kubelet client certificate, which
// opts.TLS checks.
func (r *Runner) serveKubelet(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", r.handleContainerLogs)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	addr := net.JoinHostPort(r.opts.NodeIP, strconv.Itoa(r.opts.KubeletPort))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("kubelet endpoint: %w", err)
	}
	r.server = &http.Server{
		Handler:           mux,
		TLSConfig:         r.opts.TLS.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := r.server.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error(err, "kubelet endpoint stopped")
		}
	}()
	return nil
}

func (r *Runner) handleContainerLogs(w http.ResponseWriter, req *http.Request) {
	ns, podName, container := req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container")
	opts, previous, err := parseLogQuery(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	pw := r.workerByName(ns, podName)
	if pw == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on node %s", ns, podName, r.opts.NodeName), http.StatusNotFound)
		return
	}
	pw.mu.Lock()
	cr := pw.container(container)
	var inst *instance
	if cr != nil {
		n := len(cr.instances)
		switch {
		case previous && n >= 2:
			inst = cr.instances[n-2]
		case !previous && n >= 1:
			inst = cr.instances[n-1]
		}
	}
	pw.mu.Unlock()
	switch {
	case cr == nil:
		http.Error(w, fmt.Sprintf("container %q not found in pod %s/%s", container, ns, podName), http.StatusNotFound)
		return
	case inst == nil && previous:
		http.Error(w, fmt.Sprintf("previous terminated container %q in pod %s/%s not found", container, ns, podName), http.StatusBadRequest)
		return
	case inst == nil:
		http.Error(w, fmt.Sprintf("container %q in pod %s/%s has not started yet", container, ns, podName), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	flusher, _ := w.(http.Flusher)
	out := &logOutput{w: w, opts: opts}
	if flusher != nil {
		out.flush = flusher.Flush
	}
	if err := streamLog(req.Context(), inst.logPath, inst.done, out); err != nil {
		r.log.Error(err, "serving container log", "pod", ns+"/"+podName, "container", container)
	}
}

// parseLogQuery reads the query kubelet's /containerLogs accepts.
func parseLogQuery(req *http.Request) (logOptions, bool, error) {
	q := req.URL.Query()
	var opts logOptions
	flag := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("query parameter %s=%q: want true or false", name, v)
		}
		return b, nil
	}
	number := func(name string) (*int64, error) {
		v := q.Get(name)
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("query parameter %s=%q: want a non-negative integer", name, v)
		}
		return &n, nil
	}
	var err error
	var previous bool
	if opts.follow, err = flag("follow"); err != nil {
		return opts, false, err
	}
	if previous, err = flag("previous"); err != nil {
		return opts, false, err
	}
	if opts.timestamps, err = flag("timestamps"); err != nil {
		return opts, false, err
	}
	if opts.tailLines, err = number("tailLines"); err != nil {
		return opts, false, err
	}
	if opts.limitBytes, err = number("limitBytes"); err != nil {
		return opts, false, err
	}
	sinceSeconds, err := number("sinceSeconds")
	if err != nil {
		return opts, false, err
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return opts, false, fmt.Errorf("query parameter sinceTime=%q: want RFC 3339", v)
		}
		opts.since = &t
	} else if sinceSeconds != nil {
		t := time.Now().Add(-time.Duration(*sinceSeconds) * time.Second)
		opts.since = &t
	}
	return opts, previous, nil
}
