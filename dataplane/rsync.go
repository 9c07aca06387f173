package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Modules of the rsync daemon behind `serve`.
const (
	dataModule    = "data"    // the volume, write only
	controlModule = "control" // capabilities (server → client) and the completion notice (client → server)
	// doneModule takes the completion notice. The server flushes the target volume to disk
	// before it accepts the connection (`sync -f` as pre-xfer exec), so a client whose report
	// arrived knows the data is durable, and the server learns it is done.
	doneModule = "done"
)

// daemonURL names a path in a module of the daemon. The host part is never resolved: with
// --rsh (rshCommand), "host::module" is rsync's daemon protocol over the remote shell's
// stdin/stdout, here the stunnel client, one per rsync process.
func daemonURL(module, path string) string {
	return "ferry::" + module + "/" + path
}

// rshCommand is the --rsh of every rsync of send: the stunnel client with its configuration
// (rsync appends the host and a command line, which sh leaves unused). A remote shell, unlike
// RSYNC_CONNECT_PROG, talks to rsync through an AF_UNIX socket pair: RSYNC_CONNECT_PROG's
// loopback TCP pair has Nagle's algorithm on rsync's end, and each turn of rsync's protocol
// then waited out a delayed ACK (about 40 ms, 0.08 s a connection). rsync splits the command
// at blanks and keeps quoted ones; it has no escapes, so the paths must hold no quote.
func rshCommand(stunnel, conf string) (string, error) {
	for _, p := range []string{stunnel, conf} {
		if strings.ContainsAny(p, "'\"") {
			return "", fmt.Errorf("%q contains a quote; set TMPDIR to a path without", p)
		}
	}
	return `sh -c 'exec "$0" "$1"' '` + stunnel + `' '` + conf + `'`, nil
}

// rsyncOptions are the user's choices that shape every rsync process of a transfer.
type rsyncOptions struct {
	ACLs   bool // both sides support POSIX ACLs
	Xattrs bool // both sides support extended attributes
	// Checksum: the copy compares file contents, not size and mtime (after a verify pass found
	// differences that size and mtime do not show).
	Checksum bool
	// Verify: the verify pass (verify.go), a dry run that compares every file by content and
	// lists every entry with how it differs.
	Verify   bool
	Compress bool
	// Inplace writes files directly, without a temporary copy and a rename: a fifth less
	// work per file on the receiver. Only for a first copy into an empty target: rsync writes
	// through every hard link of a target file, and a target whose links no longer match the
	// source's (from an earlier pass) would have files overwrite each other.
	Inplace     bool
	BwLimitKBps int // per rsync process; the caller splits a transfer's limit among streams
	Timeout     time.Duration
	// NoDevices leaves device files out (the server cannot create them); FIFOs and sockets
	// still go.
	NoDevices bool
}

// xattrArgs copy extended attributes, but not security labels: SELinux contexts, IMA and EVM
// belong to the target node's policy (an MCS label from the source would lock the app out).
// Nor system.* (ACLs travel with --acls): an unprivileged receiver would store them as
// user.rsync.* attributes.
var xattrArgs = []string{"--xattrs",
	"--filter=-x security.selinux", "--filter=-x security.ima", "--filter=-x security.evm", "--filter=-x system.*"}

// commonArgs are the options every pass shares. Each one is here for what it protects in a
// migration; the set is the answer to "what must be equal on the target".
func (o rsyncOptions) commonArgs() []string {
	args := []string{
		// -l: symlinks stay symlinks (also dangling ones), never followed.
		// -p -t: permissions and mtimes, so the app sees the same modes and a re-run can skip
		//        unchanged files by size+mtime.
		// -g -o: group and owner (owner only takes effect when the receiver is root).
		// -D: device files and FIFOs/sockets (devices only when the receiver is root).
		"-lptgoD",
		// Hard-linked files stay one inode on the target instead of N copies (a link farm or a
		// database's snapshot directory would otherwise grow and diverge).
		"--hard-links",
		// Owners by number, not by name: the two clusters' images have unrelated /etc/passwd,
		// and OpenShift assigns uids from namespace ranges that have no names at all.
		"--numeric-ids",
		// Never cross into another filesystem mounted below the volume.
		"--one-file-system",
		// Modification times are compared to the nanosecond. rsync's default compares whole
		// seconds: a file rewritten with the same size within the second of the last pass
		// would be skipped, and a directory's time left a fraction of a second off.
		"--modify-window=-1",
		// Full file list up front: the percentage is of the whole transfer, and hard links are
		// always found before the data is sent.
		"--no-inc-recursive",
		// An interrupted file keeps what arrived, so the retry sends only the rest.
		"--partial",
		// lost+found belongs to the target filesystem: neither copied nor deleted.
		"--filter=- /lost+found/",
		// Exact numbers for the progress parser; no thousands separators.
		"--no-human-readable",
	}
	if o.NoDevices {
		// After -D, which it partly undoes: --specials stays.
		args = append(args, "--no-devices")
	}
	if o.ACLs {
		// POSIX ACLs. Asked for (send.go) only when both filesystems support them (otherwise
		// every file would fail) and either side has some.
		args = append(args, "--acls")
	}
	if o.Xattrs {
		args = append(args, xattrArgs...)
	}
	if o.Checksum || o.Verify {
		// Read both sides fully and compare checksums, not size and mtime.
		args = append(args, "--checksum")
	}
	if o.Compress && !o.Verify {
		args = append(args, "--compress")
	}
	if o.BwLimitKBps > 0 {
		args = append(args, "--bwlimit="+strconv.Itoa(o.BwLimitKBps))
	}
	if o.Timeout > 0 {
		// A dead peer surfaces as exit code 30 (retried) instead of a hang.
		args = append(args, "--timeout="+strconv.Itoa(int(o.Timeout.Seconds())))
	}
	return args
}

// streamArgs are the arguments of one stream of the copy: the entries in filesFrom, recursively,
// minus what filterFile excludes (both NUL-separated), with deletions inside them.
func (o rsyncOptions) streamArgs(j *streamJob, filesFrom, filterFile, src string) []string {
	args := o.commonArgs()
	if j.Exact {
		args = append(args,
			// A listed path the source no longer has is deleted on the target, a directory
			// with what it holds; --force also lets a file or link replace a directory.
			"--delete-missing-args", "--force")
	} else {
		args = append(args,
			"--recursive",
			// Extraneous entries in the directories this stream owns are deleted; names owned
			// by other streams are excluded by its filter and so protected. rsync never
			// deletes outside the daemon module, i.e. outside the target volume.
			"--delete")
	}
	args = append(args, "--files-from="+filesFrom, "--from0")
	if o.Verify {
		args = append(args, verifyOutputArgs...)
	} else {
		// Whole-transfer progress lines and the final statistics, both parsed by progress.go.
		args = append(args, "--info=progress2", "--stats")
	}
	if filterFile != "" {
		args = append(args, "--filter=merge "+filterFile)
	}
	if j.Sparse && !o.Verify {
		// Holes stay holes (a 100 GiB sparse disk image must not fill a 100 GiB volume).
		// Only for streams that carry sparse files: the receiver scans every byte for zeros.
		args = append(args, "--sparse")
	}
	if o.Inplace && !o.Verify {
		args = append(args, "--inplace")
	}
	return append(args, src+"/", daemonURL(dataModule, ""))
}

// verifyOutputArgs make an rsync the verify pass: nothing changes on the target, and every
// entry is listed (twice -i: unchanged ones too) as "ITEMIZE SIZE NAME", the itemize string
// saying what differs. Names are printed with rsync's escapes (a newline as \#012).
var verifyOutputArgs = []string{"--dry-run", "--itemize-changes", "--itemize-changes", "--out-format=" + verifyOutFormat}

const verifyOutFormat = "%i %l %n"

// rootArgs are the arguments of the last pass: it lists the volume's top level only, deletes
// entries the source no longer has, and (when the receiver may) sets the root directory's
// owner, mode and times. Nothing is created or updated: the streams did that.
func (o rsyncOptions) rootArgs(src string, setRootAttrs bool) []string {
	args := []string{
		"--dirs", "--delete", "--ignore-existing", "--ignore-non-existing",
		// Symlinks and specials must be listed as what they are, or they would look
		// extraneous and be deleted.
		"-lD",
		"--modify-window=-1",
		"--filter=- /lost+found/",
		"--no-human-readable",
	}
	if o.Verify {
		args = append(args, verifyOutputArgs...)
	} else {
		args = append(args, "--stats")
	}
	if o.NoDevices {
		args = append(args, "--no-devices")
	}
	if setRootAttrs {
		// An unprivileged receiver cannot chown/chmod/utime a volume root it does not own
		// (it belongs to root or to the fsGroup); asking would fail the pass.
		args = append(args, "-ptgo", "--numeric-ids")
		if o.ACLs {
			args = append(args, "--acls")
		}
		if o.Xattrs {
			args = append(args, xattrArgs...)
		}
	}
	if o.Timeout > 0 {
		args = append(args, "--timeout="+strconv.Itoa(int(o.Timeout.Seconds())))
	}
	return append(args, src+"/", daemonURL(dataModule, ""))
}

// rsyncdConfig renders the daemon configuration `serve` hands to each rsync it starts.
type rsyncdConfig struct {
	DataDir    string
	ControlDir string
	Sync       string // the sync(1) binary
	// Root: the daemon runs as uid 0. It then chroots into the module (symlinks in the data
	// cannot lead out of it, and are stored verbatim) and keeps uid/gid 0 to set owners;
	// rsync's default for a root daemon would be to drop to "nobody". Otherwise the data
	// module munges symlinks (see links.go) and serve restores their targets after the pass.
	Root bool
	// Device: block mode (block.go). DataDir is the device's directory and Device its name
	// there; the data module takes nothing but data written into that device in place.
	Device string
	// Scanned, if set, is the file serve creates once the target's manifest is published (or
	// could not be made): a read of the control module waits for it (up to scanWait, with
	// Sleep, the sleep(1) binary), so the client's first contact already has the manifest.
	Scanned, Sleep string
}

// scanWait bounds how long a read of the control module waits for the target's manifest.
const scanWait = 5 * time.Minute

// refusedOptions are client options the daemon refuses: each names a path of its own on the
// server (which could lie outside the volume) or reaches through links or devices. ferry's
// own client uses none of them (rsyncOptions). write-devices is refused by rsync's default
// too; it is named here so that no version's default matters.
var refusedOptions = []string{
	"keep-dirlinks", "copy-unsafe-links", "copy-dirlinks", "copy-links", "write-devices",
	"compare-dest", "copy-dest", "link-dest", "backup-dir", "partial-dir", "temp-dir",
	"log-file", "log-file-format", "only-write-batch", "read-batch", "write-batch",
}

// blockRefusedOptions are refused by a block-mode data module on top of refusedOptions (less
// write-devices, which it needs): the block client copies one device into one existing
// device and needs no directories, links, device files, specials or deletions. Refused,
// none of them can replace the device node or add an entry beside it.
var blockRefusedOptions = []string{
	"recursive", "dirs", "links", "hard-links", "devices", "specials", "delete*", "remove-source-files",
	"backup", "suffix", "mkpath", "relative",
}

// blockRefuseOptions is the refuse list of a block-mode data module. "!write-devices" accepts
// what rsync refuses by default.
func blockRefuseOptions() string {
	var opts []string
	for _, o := range refusedOptions {
		if o != "write-devices" {
			opts = append(opts, o)
		}
	}
	return strings.Join(append(append(opts, blockRefusedOptions...), "!write-devices"), " ")
}

// blockWriteCheck is a block-mode data module's pre-xfer exec: it lets a transfer start only
// when the client asked for --write-devices (rsync then opens the existing device and writes
// into it; without it, rsync would write a regular file under a temporary name and rename it
// over the device node). rsync passes the client's server-side arguments as RSYNC_ARG1… up
// to ".", after which the paths follow. rsync runs it through sh before it chroots; it uses
// only sh's built-ins.
const blockWriteCheck = `i=1; while eval "test -n \"\${RSYNC_ARG$i+x}\""; do eval "a=\$RSYNC_ARG$i"; ` +
	`test "$a" = . && break; test "$a" = --write-devices && exit 0; i=$((i+1)); done; ` +
	`echo "ferry: this server only writes into its block device, in place (rsync --write-devices)"; exit 1`

func (c rsyncdConfig) render() string {
	var b strings.Builder
	b.WriteString("# ferry transfer daemon (generated; one rsync per TLS connection, no listening socket)\n")
	b.WriteString("log file = /dev/stderr\n")
	b.WriteString("max verbosity = 1\n")
	b.WriteString("transfer logging = no\n")
	// Connections come from stunnel on stdin/stdout: there is no peer address worth looking up.
	b.WriteString("reverse lookup = no\n")
	// Files' owners are numbers in a migration (see --numeric-ids on the client).
	b.WriteString("numeric ids = yes\n")
	// A connection that stops moving data ends (exit 30 on the client, which retries).
	b.WriteString("timeout = 600\n")
	// Global, so every module has it. The client is authenticated, but a stolen client key must
	// not be a way to write outside the volume.
	fmt.Fprintf(&b, "refuse options = %s\n", strings.Join(refusedOptions, " "))
	if c.Root {
		b.WriteString("uid = 0\ngid = 0\n")
	}
	fmt.Fprintf(&b, "\n[%s]\npath = %s\nread only = no\n", dataModule, c.DataDir)
	// The client only ever pushes: it never needs to read the target's files.
	b.WriteString("write only = yes\n")
	b.WriteString("list = no\n")
	if c.Device != "" {
		// Block mode: the device's directory, of which only the device may be written (the
		// daemon filter skips every other name with an error, and never deletes anything),
		// only in place (the pre-xfer check), and no option that creates anything else (a
		// directory, a link, a device file) is accepted. (No "- /NAME/" rule for a directory
		// of the device's name: rsync checks the destination name as a directory, so it would
		// exclude the device itself; -r and -d are refused instead.)
		fmt.Fprintf(&b, "filter = + /%s - *\n", c.Device)
		fmt.Fprintf(&b, "refuse options = %s\n", blockRefuseOptions())
		fmt.Fprintf(&b, "pre-xfer exec = %s\n", blockWriteCheck)
		if c.Root {
			b.WriteString("use chroot = yes\n")
		} else {
			b.WriteString("use chroot = no\n")
		}
		b.WriteString("munge symlinks = yes\n")
	} else if c.Root {
		// Symlinks are data: stored exactly as the source has them. In the chroot no link
		// leads out of the volume.
		b.WriteString("use chroot = yes\nmunge symlinks = no\n")
	} else {
		// Only root can chroot. Without chroot, rsync either sanitizes incoming link targets
		// (which changes them for good) or munges them: stored as "/rsyncd-munged/" + the exact
		// target, a link that leads nowhere while the daemon serves. serve puts the exact
		// targets back once the client is done (links.go).
		b.WriteString("use chroot = no\nmunge symlinks = yes\n")
	}
	// The control module is only read (the server's capabilities); the done module only
	// written (the client's report). Neither needs a symlink that leads anywhere.
	fmt.Fprintf(&b, "\n[%s]\npath = %s\nread only = yes\nlist = no\nuse chroot = no\nmunge symlinks = yes\n", controlModule, c.ControlDir)
	if c.Scanned != "" {
		// Run through sh by rsync; exits 0 either way (without a manifest the client copies
		// the whole volume).
		fmt.Fprintf(&b, "pre-xfer exec = i=0; while ! test -e %s && test $i -lt %d; do %s 0.05; i=$((i+1)); done; exit 0\n",
			shellQuote(c.Scanned), int(scanWait/(50*time.Millisecond)), shellQuote(c.Sleep))
	}
	fmt.Fprintf(&b, "\n[%s]\npath = %s\nread only = no\nwrite only = yes\nlist = no\nuse chroot = no\nmunge symlinks = yes\n", doneModule, c.ControlDir)
	// Run through sh by rsync; the paths passed checkConfigValue, the quotes keep blanks.
	if c.Device != "" {
		// fsync(2) of the device itself: its page cache to the device and a cache flush of the
		// device. `sync -f` would sync the filesystem holding the device node (/dev's tmpfs),
		// which leaves the device's written pages in memory.
		fmt.Fprintf(&b, "pre-xfer exec = %s %s\n", shellQuote(c.Sync), shellQuote(filepath.Join(c.DataDir, c.Device)))
	} else {
		fmt.Fprintf(&b, "pre-xfer exec = %s -f %s\n", shellQuote(c.Sync), shellQuote(c.DataDir))
	}
	return b.String()
}

// checkConfigValue rejects a value that rsyncd.conf or stunnel.conf could not hold verbatim: a
// line break would end the line, surrounding blanks are trimmed, and rsyncd.conf expands %VAR%.
func checkConfigValue(what, v string) error {
	switch {
	case strings.ContainsAny(v, "\n\r\x00"):
		return fmt.Errorf("%s %q contains a line break", what, v)
	case strings.TrimSpace(v) != v:
		return fmt.Errorf("%s %q starts or ends with blanks", what, v)
	case strings.Contains(v, "%"):
		return fmt.Errorf("%s %q contains %%, which rsync's configuration would expand", what, v)
	}
	return nil
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Exit codes of rsync (rsync(1), "EXIT VALUES").
var rsyncExitMeanings = map[int]string{
	1:  "syntax or usage error",
	2:  "protocol incompatibility",
	3:  "errors selecting input/output files, dirs",
	4:  "requested action not supported",
	5:  "error starting client-server protocol",
	6:  "daemon unable to append to log-file",
	10: "error in socket I/O",
	11: "error in file I/O",
	12: "error in rsync protocol data stream",
	13: "errors with program diagnostics",
	14: "error in IPC code",
	20: "received SIGUSR1 or SIGINT",
	21: "some error returned by waitpid()",
	22: "error allocating core memory buffers",
	23: "partial transfer due to error",
	24: "partial transfer due to vanished source files",
	25: "the --max-delete limit stopped deletions",
	30: "timeout in data send/receive",
	35: "timeout waiting for daemon connection",
}

// RsyncVanished is rsync's exit code for source files that disappeared while it ran: normal
// while the application keeps writing during a stage, so it is a warning, not a failure.
const RsyncVanished = 24

// RsyncError is a failed rsync process.
type RsyncError struct {
	Code int // exit code; -1 when killed by a signal
	// Detail is rsync's own error lines (and the stunnel client's), the last few of them.
	Detail string
	// untrusted: the TLS handshake failed on certificate checks, which no retry can fix.
	untrusted bool
}

func (e *RsyncError) Error() string {
	meaning := rsyncExitMeanings[e.Code]
	if e.Code < 0 {
		meaning = "killed by a signal"
	} else if meaning == "" {
		meaning = "unknown exit code"
	}
	msg := fmt.Sprintf("rsync exited with code %d (%s)", e.Code, meaning)
	if e.untrusted {
		msg += ": the TLS handshake failed on certificate checks (are both sides using the same transfer's certificates?)"
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// ExitCode makes `send` exit with rsync's code, so callers can tell failures apart.
func (e *RsyncError) ExitCode() int {
	if e.Code <= 0 {
		return 1
	}
	return e.Code
}

// Transient reports whether another attempt may succeed. Network and protocol-stream errors
// (a cut connection, a restarted server, a dying stunnel, a timeout) and partial transfers are
// retried; usage errors, unsupported actions and local file I/O errors (e.g. a full disk) are
// not, and neither is a refused certificate.
func (e *RsyncError) Transient() bool {
	if e.untrusted {
		return false
	}
	switch e.Code {
	case 5, // the connection to the daemon failed (refused, reset before the greeting)
		10, 12, // socket I/O / protocol stream broken: connection cut or peer died
		23,     // partial transfer: some files failed, the next attempt redoes only those
		30, 35, // timeouts
		-1: // rsync killed (e.g. OOM); a new attempt resumes
		return true
	}
	return false
}

// stderrTail keeps the last lines a child wrote to stderr, for error messages.
type stderrTail struct {
	lines []string
	max   int
}

func (t *stderrTail) add(line string) {
	if t.max == 0 {
		t.max = 8
	}
	if len(t.lines) == t.max {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:t.max-1]
	}
	t.lines = append(t.lines, line)
}

func (t *stderrTail) String() string { return strings.Join(t.lines, "; ") }

// certificateFailure matches stunnel's and OpenSSL's words for a peer certificate that failed
// the checks (wrong CA, wrong name, expired), as the stunnel client logs them.
var certificateFailure = regexp.MustCompile(`(?i)certificate verify failed|CERT: .*(rejected|verification)|Rejected by CERT|checkHost|certificate (has )?expired|unknown ca|bad certificate|certificate required`)

// rsyncExitError turns a finished rsync into an *RsyncError (nil on success).
func rsyncExitError(err error, tail *stderrTail) error {
	if err == nil {
		return nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return err
	}
	code := exitErr.ExitCode() // -1 when signalled
	detail := tail.String()
	return &RsyncError{Code: code, Detail: detail, untrusted: certificateFailure.MatchString(detail)}
}

// rsyncCapabilities is what an rsync binary was built with.
type rsyncCapabilities struct {
	Version  string
	Protocol int
	ACLs     bool
	Xattrs   bool
}

var rsyncVersionLine = regexp.MustCompile(`rsync\s+version\s+v?(\S+)\s+protocol version (\d+)`)

// probeRsync runs `rsync --version`.
func probeRsync(ctx context.Context, rsync string) (rsyncCapabilities, error) {
	out, err := exec.CommandContext(ctx, rsync, "--version").Output()
	if err != nil {
		return rsyncCapabilities{}, fmt.Errorf("running %s --version: %w", rsync, err)
	}
	return parseRsyncVersion(out)
}

func parseRsyncVersion(out []byte) (rsyncCapabilities, error) {
	var c rsyncCapabilities
	m := rsyncVersionLine.FindSubmatch(out)
	if m == nil {
		return c, fmt.Errorf("unexpected rsync --version output %q", firstLine(out))
	}
	c.Version = string(m[1])
	c.Protocol, _ = strconv.Atoi(string(m[2]))
	// Capabilities are listed as comma-separated words; a build without a feature says
	// "no ACLs" / "no xattrs".
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, word := range strings.Split(sc.Text(), ",") {
			switch strings.TrimSpace(word) {
			case "ACLs":
				c.ACLs = true
			case "xattrs":
				c.Xattrs = true
			}
		}
	}
	return c, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}
