package images

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/ferry-dev/ferry/internal/operation"
)

// Prometheus metrics of image-stream copies (README: "Metrics"). Label values are lower-case.
var (
	copiesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_image_copies_total",
		Help: "Image-stream copies that ended, by result (completed, failed, cancelled, refused).",
	}, []string{"result"})
	blobsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_image_copy_blobs_total",
		Help: "Blobs of ended copies, by outcome: sent to the target registry, or skipped (it had them).",
	}, []string{"outcome"})
	copyBytesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ferry_image_copy_bytes_total",
		Help: "Bytes of blobs sent to the target registry by ended copies.",
	})
	copyLastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_image_copy_last_success_timestamp_seconds",
		Help: "When an image stream's last copy completed (Unix time).",
	}, []string{"namespace", "imagestream"})
)

func init() {
	metrics.Registry.MustRegister(copiesTotal, blobsTotal, copyBytesTotal, copyLastSuccess)
}

// recordEnd counts an ended copy of stream namespace/name.
func recordEnd(namespace, name string, st *operation.ImageCopyStatus) {
	copiesTotal.WithLabelValues(strings.ToLower(string(st.Phase))).Inc()
	blobsTotal.WithLabelValues("sent").Add(float64(st.BlobsSent))
	blobsTotal.WithLabelValues("skipped").Add(float64(st.BlobsSkipped))
	copyBytesTotal.Add(float64(st.BytesSent))
	if st.Phase == operation.PhaseCompleted && st.Completed != nil {
		copyLastSuccess.WithLabelValues(namespace, name).Set(float64(st.Completed.Unix()))
	}
}
