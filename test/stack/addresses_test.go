package stack

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAddressLayout(t *testing.T) {
	a := addresses{a: 40, b: 248}
	seen := map[string]string{}
	add := func(what, ip string) {
		t.Helper()
		require.NotNil(t, net.ParseIP(ip), "%s %q", what, ip)
		assert.True(t, strings.HasPrefix(ip, "127.40."), "%s %s is in the stack's block", what, ip)
		if other, dup := seen[ip]; dup {
			t.Errorf("%s and %s share %s", what, other, ip)
		}
		seen[ip] = what
	}
	add("etcd", a.etcd())
	add("s3", a.s3())
	for i := range 2 {
		add("apiserver", a.apiServer(i))
		add("kcm", a.kcm(i))
		add("registry", a.registry(i))
		add("node", a.node(i))
		add("scheduler", a.scheduler(i))
		ips := a.podIPs(i)
		assert.Len(t, ips, podAddressCount)
		for _, ip := range ips {
			add("pod", ip)
		}
	}
	assert.Equal(t, "127.40.249.2", a.podIPs(0)[0])
	assert.Equal(t, "127.40.250.251", a.podIPs(1)[podAddressCount-1])
	assert.Len(t, a.listenAddrs(), 13)
}

func TestPickAddressesAvoidsBusyBlocks(t *testing.T) {
	a, err := pickAddresses()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, a.a, byte(16))
	assert.Zero(t, a.b%4)
	assert.True(t, a.free())
	l, err := net.Listen("tcp", hostPort(a.apiServer(1), apiServerPort))
	require.NoError(t, err)
	defer l.Close()
	assert.False(t, a.free(), "a block with a busy listener is not free")
}

func TestUniqueName(t *testing.T) {
	n := UniqueName("Shop-")
	assert.Regexp(t, `^shop-[a-z0-9]{6}$`, n)
	assert.NotEqual(t, n, UniqueName("shop"))
	long := UniqueName(strings.Repeat("x", 80))
	assert.Len(t, long, 63)
}
