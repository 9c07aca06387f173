package volume

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferry-dev/ferry/internal/operation"
)

// Prometheus metrics of PVC transfers, served on the data mover's metrics address (README:
// "Metrics"). Label values are lower-case. Per-PVC series are one per migrated PVC: the phase
// and progress ones go when the transfer ends, the last success stays (stale-stage alerts).
var (
	transfersTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_transfers_total",
		Help: "Transfers that ended, by type (stage, final) and result (completed, failed, cancelled, refused).",
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
		Help: "Transfer pods that failed or stalled (each may be retried), by role (client, server).",
	}, []string{"role"})
	transferPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_transfer_phase",
		Help: "1 for the phase a PVC's transfer is in (pending, preparing, quiescing, transferring), with its type; gone when it ends.",
	}, []string{"namespace", "pvc", "type", "phase"})
	transferPhaseSince = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_transfer_phase_since_timestamp_seconds",
		Help: "When a PVC's transfer entered its current phase (Unix time); gone when it ends.",
	}, []string{"namespace", "pvc", "type"})
	transferProgressBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_transfer_progress_bytes",
		Help: "Bytes of a PVC's volume checked or copied so far by the running transfer; gone when it ends.",
	}, []string{"namespace", "pvc"})
	transferSizeBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_transfer_size_bytes",
		Help: "Bytes of a PVC's volume the running transfer goes through; gone when it ends.",
	}, []string{"namespace", "pvc"})
	transferLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_transfer_last_success_timestamp_seconds",
		Help: "When a PVC's last transfer of this type completed (Unix time).",
	}, []string{"namespace", "pvc", "type"})
	transferLastFailure = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_transfer_last_failure_timestamp_seconds",
		Help: "When a PVC's last transfer of this type failed or was refused (Unix time).",
	}, []string{"namespace", "pvc", "type"})
)

func init() {
	metrics.Registry.MustRegister(transfersTotal, transferBytesTotal, transferDuration, transfersActive, transferFailures,
		transferPhase, transferPhaseSince, transferProgressBytes, transferSizeBytes, transferLastSuccess, transferLastFailure)
}

// label is a metric label value: lower-case.
func label[T ~string](v T) string { return strings.ToLower(string(v)) }

// recordState shows a PVC's transfer status in the per-PVC series.
func recordState(namespace, pvc string, st *operation.TransferStatus) {
	key := prometheus.Labels{"namespace": namespace, "pvc": pvc}
	transferPhase.DeletePartialMatch(key)
	transferPhaseSince.DeletePartialMatch(key)
	typ := label(st.Type)
	if typ == "" {
		typ = label(operation.Stage)
	}
	if st.Completed != nil {
		switch st.Phase {
		case operation.PhaseCompleted:
			transferLastSuccess.WithLabelValues(namespace, pvc, typ).Set(float64(st.Completed.Unix()))
		case operation.PhaseFailed, operation.PhaseRefused:
			transferLastFailure.WithLabelValues(namespace, pvc, typ).Set(float64(st.Completed.Unix()))
		}
	}
	if st.Phase.Terminal() {
		transferProgressBytes.Delete(key)
		transferSizeBytes.Delete(key)
		return
	}
	transferPhase.WithLabelValues(namespace, pvc, typ, label(st.Phase)).Set(1)
	if st.Since != nil {
		transferPhaseSince.WithLabelValues(namespace, pvc, typ).Set(float64(st.Since.Unix()))
	}
	transferProgressBytes.With(key).Set(float64(st.BytesDone))
	transferSizeBytes.With(key).Set(float64(st.BytesTotal))
}
