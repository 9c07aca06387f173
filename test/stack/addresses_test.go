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
		add("scheduler", a.scheduler(i))
	}
	assert.Len(t, a.listenAddrs(), 11)
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

func TestNodeAddressLayout(t *testing.T) {
	_, reserved, err := net.ParseCIDR("198.18.0.0/15")
	require.NoError(t, err)
	seen := map[string]int{}
	for block := range nodeBlocks {
		n := nodeAddresses{block: block}
		_, stackNet, err := net.ParseCIDR(n.ip(0, 0) + "/21")
		require.NoError(t, err)
		require.Equal(t, n.ip(0, 0), stackNet.IP.String(), "block %d starts on a /21 boundary", block)
		cidrs := []string{n.linkCIDR()}
		for i := range 2 {
			cidrs = append(cidrs, n.podCIDR(i), n.serviceCIDR(i), n.lbCIDR(i))
			for _, ip := range []string{n.nodeIP(i), n.podGateway(i), n.kubernetesService(i), n.lbIPs(i)[0]} {
				assert.True(t, stackNet.Contains(net.ParseIP(ip)), "%s in block %d", ip, block)
			}
		}
		for _, c := range cidrs {
			ip, _, err := net.ParseCIDR(c)
			require.NoError(t, err)
			assert.True(t, reserved.Contains(ip) && stackNet.Contains(ip), "%s inside 198.18.0.0/15 and block %d", c, block)
			if other, dup := seen[c]; dup {
				t.Errorf("%s used by blocks %d and %d", c, other, block)
			}
			seen[c] = block
		}
	}
	last := nodeAddresses{block: nodeBlocks - 1}
	assert.Equal(t, "198.19.254.0/24", last.lbCIDR(1))
	assert.Equal(t, "198.18.8.11", nodeAddresses{block: 1}.nodeIP(0))
}
