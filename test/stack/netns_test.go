package stack

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The relay makes a host service reachable at the same address inside a network namespace,
// where nothing else is: a real namespace, a real TCP service.
func TestRelay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("network namespaces need root; running as uid %d", os.Geteuid())
	}
	a, err := pickAddresses()
	require.NoError(t, err)
	addr := hostPort(a.s3(), s3Port)
	echo, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "host got %s", line)
			}()
		}
	}()
	ns := netnsName("relaytest")
	require.NoError(t, addNetNS(ns))
	defer func() { assert.NoError(t, delNetNS(ns)) }()

	_, err = dialIn(ns, addr)
	require.Error(t, err, "before the relay, the host service is unreachable inside the namespace")

	r, err := startRelay(ns, []string{addr})
	require.NoError(t, err)
	reply, err := dialIn(ns, addr)
	require.NoError(t, err)
	assert.Equal(t, "host got hello\n", reply)

	r.Close()
	_, err = dialIn(ns, addr)
	assert.Error(t, err, "closed relay")
}

// dialIn connects to addr from inside the namespace and exchanges one line.
func dialIn(ns, addr string) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // left locked: the thread is retired with the goroutine
		f, err := os.Open(netnsPath(ns))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		fmt.Fprintf(c, "hello\n")
		data, err := io.ReadAll(c)
		if err == nil && len(data) == 0 {
			err = io.ErrUnexpectedEOF
		}
		ch <- result{string(data), err}
	}()
	r := <-ch
	return r.s, r.err
}
