package stack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProcessLogAndStop(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess(dir, dir, ProcessSpec{Name: "trapper", Path: "/bin/sh", Args: []string{"-c", `trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.05; done`}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return strings.Contains(p.Tail(5), "started") }, 10*time.Second, 20*time.Millisecond)
	assert.Empty(t, p.unexpectedExit())
	require.NoError(t, p.Stop(5*time.Second))
	assert.Contains(t, p.Tail(5), "bye", "SIGTERM first")
	assert.Empty(t, p.unexpectedExit(), "a stop is expected")
	assert.Equal(t, filepath.Join(dir, "trapper.log"), p.LogPath)
}

func TestProcessUnexpectedExit(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess(dir, dir, ProcessSpec{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "echo dying; exit 4"}})
	require.NoError(t, err)
	<-p.Done()
	assert.Contains(t, p.unexpectedExit(), "crasher exited unexpectedly: exit status 4")
	err = waitReady(context.Background(), p, time.Second, func(context.Context) error { return errors.New("never ready") })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "crasher exited while starting")
	assert.Contains(t, err.Error(), "dying", "the log tail says why")
}

func TestProcessNotReady(t *testing.T) {
	dir := t.TempDir()
	p, err := startProcess(dir, dir, ProcessSpec{Name: "sleeper", Path: "sleep", Args: []string{"100"}})
	require.NoError(t, err)
	defer p.Stop(time.Second)
	err = waitReady(context.Background(), p, 300*time.Millisecond, func(context.Context) error { return errors.New("port closed") })
	assert.ErrorContains(t, err, "sleeper not ready after 300ms: port closed")
}

func TestProcessBadName(t *testing.T) {
	_, err := startProcess(t.TempDir(), "", ProcessSpec{Name: "a/b", Path: "true"})
	assert.ErrorContains(t, err, `process name "a/b"`)
}

func TestTailFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.log")
	require.NoError(t, os.WriteFile(p, []byte("1\n2\n3\n4\n"), 0o644))
	assert.Equal(t, "3\n4", tailFile(p, 2))
	assert.Equal(t, "1\n2\n3\n4", tailFile(p, 10))
	assert.Contains(t, tailFile(filepath.Join(t.TempDir(), "none"), 2), "no log")
}
