package podrunner

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func TestNewRejectsBadOptions(t *testing.T) {
	_, err := New(Options{NodeIP: "nope", PodIPs: []string{"127.0.0.1", "x"}, KubeletPort: 70000})
	require.Error(t, err)
	for _, want := range []string{"Client is required", "NodeName is required", `NodeIP "nope"`, "KubeletPort 70000", "TLS", `pod IP "x"`, "Dir is required"} {
		assert.Contains(t, err.Error(), want)
	}
	r, err := New(Options{Client: kubefake.NewClientset(), NodeName: "n", NodeIP: "127.0.0.1", KubeletPort: 10250,
		TLS: &tls.Config{Certificates: []tls.Certificate{{}}}, PodIPs: []string{"127.0.0.2"}, Dir: t.TempDir()})
	require.NoError(t, err)
	assert.Equal(t, "app.kubernetes.io/managed-by=ferry", r.opts.Selector.String(), "ferry's pods by default")
}

func TestIPPool(t *testing.T) {
	p := newIPPool([]string{"a", "b"})
	a, err := p.allocate("uid1")
	require.NoError(t, err)
	again, err := p.allocate("uid1")
	require.NoError(t, err)
	assert.Equal(t, a, again, "a pod keeps its address")
	b, err := p.allocate("uid2")
	require.NoError(t, err)
	assert.NotEqual(t, a, b)
	_, err = p.allocate("uid3")
	assert.ErrorContains(t, err, "all 2 pod addresses are in use")
	p.release("uid1")
	c, err := p.allocate(types.UID("uid3"))
	require.NoError(t, err)
	assert.Equal(t, a, c, "a released address is handed out again")
}

func TestGracePeriod(t *testing.T) {
	assert.Equal(t, 30*time.Second, gracePeriod(&corev1.Pod{}))
	assert.Equal(t, 5*time.Second, gracePeriod(&corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](5)}}))
	p := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](5)}}
	p.DeletionGracePeriodSeconds = ptr.To[int64](0)
	assert.Equal(t, time.Duration(0), gracePeriod(p), "a forced deletion wins")
}

func TestFits(t *testing.T) {
	r := &Runner{opts: Options{NodeName: "source-node"}}
	assert.True(t, r.fits(&corev1.Pod{}))
	assert.True(t, r.fits(&corev1.Pod{Spec: corev1.PodSpec{NodeSelector: map[string]string{corev1.LabelHostname: "source-node"}}}))
	assert.False(t, r.fits(&corev1.Pod{Spec: corev1.PodSpec{NodeSelector: map[string]string{corev1.LabelHostname: "other"}}}))
}
