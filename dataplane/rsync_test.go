package dataplane

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStreamArgs(t *testing.T) {
	cases := []struct {
		name    string
		opts    rsyncOptions
		job     streamJob
		filter  string
		want    []string
		notWant []string
	}{
		{
			name: "defaults",
			want: []string{"-lptgoD", "--hard-links", "--numeric-ids", "--one-file-system", "--no-inc-recursive", "--partial",
				"--recursive", "--delete", "--files-from=/w/files", "--from0", "--info=progress2", "--stats", "--no-human-readable", "/src/", "ferry::data/"},
			notWant: []string{"--acls", "--xattrs", "--checksum", "--compress", "--sparse", "--inplace", "--whole-file"},
		},
		{
			name: "everything on",
			opts: rsyncOptions{ACLs: true, Xattrs: true, Checksum: true, Compress: true, BwLimitKBps: 250, Timeout: 10 * time.Minute, Inplace: true},
			job:  streamJob{Sparse: true}, filter: "/w/filter",
			want: []string{"--acls", "--xattrs", "--filter=-x security.selinux", "--filter=-x system.*", "--checksum", "--compress", "--bwlimit=250",
				"--timeout=600", "--sparse", "--filter=merge /w/filter", "--inplace"},
		},
		{
			// The verify pass: the copy's options, by content, as a dry run listing every entry.
			name: "verify",
			opts: rsyncOptions{ACLs: true, Compress: true, Inplace: true, Verify: true},
			job:  streamJob{Sparse: true}, filter: "/w/filter",
			want: []string{"-lptgoD", "--hard-links", "--numeric-ids", "--acls", "--checksum", "--recursive", "--delete", "--files-from=/w/files",
				"--filter=merge /w/filter", "--dry-run", "--itemize-changes", "--out-format=%i %l %n"},
			notWant: []string{"--info=progress2", "--stats", "--sparse", "--inplace", "--compress"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.opts.streamArgs(&tc.job, "/w/files", tc.filter, "/src")
			for _, w := range tc.want {
				assert.Contains(t, args, w)
			}
			for _, w := range tc.notWant {
				assert.NotContains(t, args, w)
			}
			assert.Equal(t, "ferry::data/", args[len(args)-1], "destination last")
			assert.Equal(t, "/src/", args[len(args)-2], "trailing slash: the contents, not the directory")
		})
	}
}

func TestRootArgs(t *testing.T) {
	o := rsyncOptions{ACLs: true, Xattrs: true}
	privileged := o.rootArgs("/src", true)
	for _, w := range []string{"--dirs", "--delete", "--ignore-existing", "--ignore-non-existing", "-lD", "-ptgo", "--numeric-ids", "--acls", "--xattrs"} {
		assert.Contains(t, privileged, w)
	}
	assert.NotContains(t, privileged, "--recursive", "the root pass lists the top level only")

	unprivileged := o.rootArgs("/src", false)
	for _, w := range []string{"-ptgo", "--acls", "--xattrs"} {
		assert.NotContains(t, unprivileged, w, "an unprivileged receiver must not touch the root's attributes")
	}
	assert.Contains(t, unprivileged, "--delete")

	o.Verify = true
	verify := o.rootArgs("/src", true)
	for _, w := range []string{"--dirs", "--delete", "--dry-run", "--itemize-changes", "--out-format=%i %l %n", "-ptgo", "--acls"} {
		assert.Contains(t, verify, w)
	}
	assert.NotContains(t, verify, "--stats")
}

func TestRsyncdConfig(t *testing.T) {
	root := rsyncdConfig{DataDir: "/mnt/data", ControlDir: "/tmp/w/control", Sync: "/usr/bin/sync", Root: true}.render()
	for _, w := range []string{"uid = 0\ngid = 0\n", "[data]\npath = /mnt/data\nread only = no\nwrite only = yes\n",
		"use chroot = yes\nmunge symlinks = no\n", "numeric ids = yes", "[control]\npath = /tmp/w/control\nread only = yes\n",
		"[done]\npath = /tmp/w/control\nread only = no\nwrite only = yes\n", "pre-xfer exec = '/usr/bin/sync' -f '/mnt/data'"} {
		assert.Contains(t, root, w)
	}
	assert.NotContains(t, root, "test -e", "a first copy waits for no manifest")
	user := rsyncdConfig{DataDir: "/mnt/my data", ControlDir: "/tmp/c", Sync: "/bin/sync", Scanned: "/tmp/w/scanned", Sleep: "/bin/sleep"}.render()
	assert.Contains(t, user, "[control]\npath = /tmp/c\nread only = yes\nlist = no\nuse chroot = no\nmunge symlinks = yes\n"+
		"pre-xfer exec = i=0; while ! test -e '/tmp/w/scanned' && test $i -lt 6000; do '/bin/sleep' 0.05; i=$((i+1)); done; exit 0\n",
		"reading the control module waits for the target's manifest")
	assert.NotContains(t, user, "uid = 0", "a non-root daemon cannot switch users")
	assert.NotContains(t, user, "use chroot = yes", "only root can chroot")
	assert.Contains(t, user, "[data]\npath = /mnt/my data\nread only = no\nwrite only = yes\nlist = no\nuse chroot = no\nmunge symlinks = yes\n",
		"without chroot, links are munged while serving (serve restores them)")
	assert.Contains(t, user, "pre-xfer exec = '/bin/sync' -f '/mnt/my data'")
	for _, cfg := range []string{root, user} {
		assert.Contains(t, cfg, "refuse options = keep-dirlinks copy-unsafe-links copy-dirlinks copy-links write-devices compare-dest")
		assert.Contains(t, cfg, "backup-dir partial-dir temp-dir log-file log-file-format only-write-batch read-batch write-batch\n")
	}
}

// TestClientUsesNoRefusedOption: ferry's own client never sends an option its server refuses.
func TestClientUsesNoRefusedOption(t *testing.T) {
	o := rsyncOptions{ACLs: true, Xattrs: true, Checksum: true, Compress: true, BwLimitKBps: 1, Timeout: time.Minute, Inplace: true, NoDevices: true}
	all := append(o.streamArgs(&streamJob{Sparse: true}, "/w/files", "/w/filter", "/src"), o.rootArgs("/src", true)...)
	o.Verify = true
	all = append(all, o.streamArgs(&streamJob{}, "/w/files", "/w/filter", "/src")...)
	all = append(all, o.rootArgs("/src", true)...)
	for _, a := range all {
		for _, r := range refusedOptions {
			assert.False(t, a == "--"+r || strings.HasPrefix(a, "--"+r+"="), "%s is refused by the server", a)
		}
	}
}

func TestCheckConfigValue(t *testing.T) {
	for _, ok := range []string{"/mnt/data", "/a b/c", "/ünï/#x"} {
		assert.NoError(t, checkConfigValue("dir", ok), ok)
	}
	for v, want := range map[string]string{
		"/a\nb":   "line break",
		" /a":     "blanks",
		"/a ":     "blanks",
		"/a%HOME": "contains %",
	} {
		assert.ErrorContains(t, checkConfigValue("dir", v), want, v)
	}
}

func TestShellQuote(t *testing.T) {
	out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(`it's a "path" $HOME`)).Output()
	require.NoError(t, err)
	assert.Equal(t, `it's a "path" $HOME`, string(out))
}

func TestRsyncErrorTransient(t *testing.T) {
	cases := []struct {
		code      int
		detail    string
		transient bool
	}{
		{1, "", false}, {2, "", false}, {3, "", false}, {4, "", false}, {11, "No space left on device", false},
		{5, "s_connect: connect 127.0.0.1:1: Connection refused (111)", true},
		{10, "", true}, {12, "connection unexpectedly closed", true}, {23, "", true}, {30, "", true}, {35, "", true},
		{-1, "", true},
		// The server refused our certificate, or we refused the server's: no retry fixes that.
		{12, "SSL_connect: ssl/record/rec_layer_s3.c:1584: error:0A000418:SSL routines::tlsv1 alert unknown ca", false},
		{5, "Rejected by CERT at depth=0: O=ferry, CN=ferry-transfer-client", false},
		{12, "CERT: Certificate verify failed", false},
	}
	for _, tc := range cases {
		tail := &stderrTail{}
		tail.add(tc.detail)
		e := &RsyncError{Code: tc.code, Detail: tail.String(), untrusted: certificateFailure.MatchString(tc.detail)}
		assert.Equal(t, tc.transient, e.Transient(), "code %d %q", tc.code, tc.detail)
		assert.Equal(t, tc.transient, retryable(e))
		if tc.code > 0 {
			assert.Equal(t, tc.code, e.ExitCode())
		} else {
			assert.Equal(t, 1, e.ExitCode())
		}
	}
	assert.Contains(t, (&RsyncError{Code: 23, Detail: "x"}).Error(), "code 23 (partial transfer due to error): x")
}

func TestRsyncExitError(t *testing.T) {
	tail := &stderrTail{max: 2}
	for _, l := range []string{"one", "two", "three"} {
		tail.add(l)
	}
	assert.Equal(t, "two; three", tail.String(), "keeps the last lines")

	err := rsyncExitError(exec.Command("sh", "-c", "exit 24").Run(), tail)
	var r *RsyncError
	require.ErrorAs(t, err, &r)
	assert.Equal(t, RsyncVanished, r.Code)
	assert.NoError(t, rsyncExitError(nil, tail))
}

func TestParseRsyncVersion(t *testing.T) {
	out := `rsync  version 3.5.0  protocol version 32
Copyright (C) 1996-2026 by Andrew Tridgell, Wayne Davison, and others.
Capabilities:
    64-bit files, 64-bit inums, 64-bit timestamps, 64-bit long ints,
    socketpairs, symlinks, symtimes, hardlinks, hardlink-specials,
    hardlink-symlinks, IPv6, atimes, batchfiles, inplace, append, ACLs,
    ACL-at, xattrs, optional secluded-args, iconv, prealloc, stop-at,
`
	c, err := parseRsyncVersion([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, rsyncCapabilities{Version: "3.5.0", Protocol: 32, ACLs: true, Xattrs: true}, c)

	c, err = parseRsyncVersion([]byte("rsync  version v3.2.3  protocol version 31\n    no ACLs, no xattrs, symlinks\n"))
	require.NoError(t, err)
	assert.Equal(t, rsyncCapabilities{Version: "3.2.3", Protocol: 31}, c)

	_, err = parseRsyncVersion([]byte("openrsync: protocol version 29"))
	assert.ErrorContains(t, err, "unexpected rsync --version output")
}

// The installed rsync is the one the tests and the transfer image run.
func TestProbeInstalledRsync(t *testing.T) {
	rsync, err := findRsync()
	require.NoError(t, err, "rsync must be installed (make deps)")
	c, err := probeRsync(context.Background(), rsync)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, c.Protocol, 31, "rsync 3.1 or newer (progress2, --info)")
	assert.True(t, strings.HasPrefix(c.Version, "3."), c.Version)
}

func TestRshCommand(t *testing.T) {
	rsh, err := rshCommand("/usr/bin/stunnel4", "/tmp/my work/stunnel.conf")
	require.NoError(t, err)
	assert.Equal(t, `sh -c 'exec "$0" "$1"' '/usr/bin/stunnel4' '/tmp/my work/stunnel.conf'`, rsh)
	_, err = rshCommand("/usr/bin/stunnel4", "/tmp/it's/stunnel.conf")
	assert.ErrorContains(t, err, "contains a quote")
	// What the client says at the end of each connection (TIMEOUTclose = 0) is not logged.
	assert.True(t, stunnelCloseTimeout.MatchString("2026.12.06 05:15:24 LOG3[0]: transfer: s_poll_wait: TIMEOUTclose exceeded: closing"))
	assert.False(t, stunnelCloseTimeout.MatchString("2026.12.06 05:15:24 LOG3[0]: SSL_connect: certificate verify failed"))
}
