package podrunner

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
)

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}

func exited(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
}

func waiting() corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
}

func TestPhase(t *testing.T) {
	tests := []struct {
		name        string
		policy      corev1.RestartPolicy
		initialized bool
		killed      bool
		failReason  string
		states      []corev1.ContainerState
		want        corev1.PodPhase
	}{
		{"before init", corev1.RestartPolicyNever, false, false, "", []corev1.ContainerState{waiting()}, corev1.PodPending},
		{"not started yet", corev1.RestartPolicyNever, true, false, "", []corev1.ContainerState{waiting()}, corev1.PodPending},
		{"running", corev1.RestartPolicyNever, true, false, "", []corev1.ContainerState{running()}, corev1.PodRunning},
		{"one done one running", corev1.RestartPolicyNever, true, false, "", []corev1.ContainerState{exited(0), running()}, corev1.PodRunning},
		{"all succeeded", corev1.RestartPolicyNever, true, false, "", []corev1.ContainerState{exited(0), exited(0)}, corev1.PodSucceeded},
		{"one failed, never restarts", corev1.RestartPolicyNever, true, false, "", []corev1.ContainerState{exited(0), exited(3)}, corev1.PodFailed},
		{"failed, restarts on failure", corev1.RestartPolicyOnFailure, true, false, "", []corev1.ContainerState{exited(1)}, corev1.PodRunning},
		{"succeeded, on failure", corev1.RestartPolicyOnFailure, true, false, "", []corev1.ContainerState{exited(0)}, corev1.PodSucceeded},
		{"exited, always restarts", corev1.RestartPolicyAlways, true, false, "", []corev1.ContainerState{exited(0)}, corev1.PodRunning},
		{"killed, always", corev1.RestartPolicyAlways, true, true, "", []corev1.ContainerState{exited(143)}, corev1.PodFailed},
		{"bad spec", corev1.RestartPolicyNever, false, false, "UnsupportedMountPath", []corev1.ContainerState{waiting()}, corev1.PodFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &podWorker{pod: &corev1.Pod{Spec: corev1.PodSpec{RestartPolicy: tt.policy}}, initialized: tt.initialized, killed: tt.killed, failReason: tt.failReason}
			for _, s := range tt.states {
				w.statuses = append(w.statuses, &containerRun{spec: &corev1.Container{}, state: s})
			}
			assert.Equal(t, tt.want, w.phase())
		})
	}
}

func TestStatusConditions(t *testing.T) {
	r := &Runner{opts: Options{NodeIP: "127.9.9.13"}}
	w := &podWorker{r: r, pod: &corev1.Pod{}, podIP: "127.9.10.2", initialized: true}
	w.statuses = []*containerRun{{spec: &corev1.Container{Name: "a", Image: "img"}, state: running(), ready: true}}
	st := w.statusLocked()
	assert.Equal(t, corev1.PodRunning, st.Phase)
	assert.Equal(t, "127.9.10.2", st.PodIP)
	assert.Equal(t, "127.9.9.13", st.HostIP)
	conds := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range st.Conditions {
		conds[c.Type] = c.Status
	}
	assert.Equal(t, corev1.ConditionTrue, conds[corev1.PodReady])
	assert.Equal(t, corev1.ConditionTrue, conds[corev1.ContainersReady])
	assert.True(t, st.ContainerStatuses[0].Ready)

	w.statuses[0].ready = false
	st = w.statusLocked()
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			assert.Equal(t, corev1.ConditionFalse, c.Status, "not ready until the probe says so")
		}
	}
}
