package volume

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Prometheus metrics of the sidecar, served on its metrics address (README: "Metrics").
var (
	transfersTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_transfers_total",
		Help: "Transfers that ended, by type (stage, final) and result (Completed, Failed, Cancelled).",
	}, []string{"type", "result"})
	transferBytesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_transfer_bytes_total",
		Help: "Bytes that went over the wire for completed transfers (after rsync's deltas), by type.",
	}, []string{"type"})
	transferDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_transfer_duration_seconds",
		Help:    "Duration of ended transfers, from acceptance to the end, by type and result.",
		Buckets: prometheus.ExponentialBuckets(5, 2, 14), // 5 s .. ~11 h
	}, []string{"type", "result"})
	transfersActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ferry_transfers_active",
		Help: "Transfers holding a concurrency slot.",
	})
	transferFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_transfer_attempt_failures_total",
		Help: "Transfer pods that failed (each may be retried), by role (client, server).",
	}, []string{"role"})
)

func init() {
	metrics.Registry.MustRegister(transfersTotal, transferBytesTotal, transferDuration, transfersActive, transferFailures)
}
