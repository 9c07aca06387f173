package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// ServeOptions configure Serve.
type ServeOptions struct {
	// Dir is the target directory (the volume) the client's tree is written into.
	Dir string
	// Device is the target block device the client's device is written into (block.go),
	// instead of a directory. Exactly one of Dir and Device is set.
	Device string
	// Listen is the TLS address, host:port.
	Listen string
	// CertDir holds the server bundle: ca.crt, tls.crt, tls.key.
	CertDir string
	// WorkDir is where the private configuration goes (default: $TMPDIR). Nothing secret is
	// written there: the configuration refers to the key file by path.
	WorkDir string
	// RequireEmpty refuses to serve into a directory that holds anything but lost+found, or
	// into a device whose first MiB holds anything but zeros (blockIsBlank): a volume ferry
	// has not filled before must not lose what someone else put there.
	RequireEmpty bool
	// ReadyFile, if set, is created once the server accepts connections and removed when Serve
	// returns: a pod's exec readiness probe tests for it (a TCP probe would be a TLS handshake
	// that stunnel logs as a failed one every period).
	ReadyFile string
	// Ready, if set, is called once the server accepts connections.
	Ready func()
	Log   logrus.FieldLogger
}

// drainTimeout bounds the wait for the client's last rsync connection after it reported
// completion (it is the upload of the report itself, which takes milliseconds).
const drainTimeout = 30 * time.Second

// Serve runs the target side of a transfer: stunnel on o.Listen (TLS ≥ 1.2, client certificate
// required and verified against the transfer's CA) handing each connection to an rsync daemon
// that writes into o.Dir. It returns nil once the client has reported completion (after it
// had the target flushed to disk), an error if the client reported failure, if the setup is
// wrong (certificates, port, programs), or if ctx ends first.
func Serve(ctx context.Context, o ServeOptions) (retErr error) {
	log := o.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	// Block mode (block.go): dir is the device's directory, the data module's path.
	var (
		dir, device string
		deviceBytes int64
		err         error
	)
	switch {
	case o.Dir != "" && o.Device != "":
		return fmt.Errorf("--dir and --device exclude each other: serve into a directory or a block device")
	case o.Device != "":
		if device, deviceBytes, err = checkDevice("target device", o.Device); err != nil {
			return err
		}
		dir = filepath.Dir(device)
	default:
		if o.Dir == "" {
			return fmt.Errorf("a target is required: --dir (a directory) or --device (a block device)")
		}
		if dir, err = checkDir("target directory", o.Dir); err != nil {
			return err
		}
	}
	certDir, err := filepath.Abs(o.CertDir)
	if err != nil {
		return err
	}
	if err := checkConfigValue("certificate directory", certDir); err != nil {
		return err
	}
	bundle, err := LoadBundle(certDir, ServerName)
	if err != nil {
		return err
	}
	if _, err := listenPort(o.Listen); err != nil {
		return err
	}
	rsync, err := findRsync()
	if err != nil {
		return err
	}
	stunnel, err := findStunnel()
	if err != nil {
		return err
	}
	syncBin, err := lookPath("sync (coreutils)", "sync")
	if err != nil {
		return err
	}
	sleepBin, err := lookPath("sleep (coreutils)", "sleep")
	if err != nil {
		return err
	}
	rs, err := probeRsync(ctx, rsync)
	if err != nil {
		return err
	}
	caps, err := probeCapabilities(dir, rs)
	if err != nil {
		return err
	}
	// Fail fast and clearly on a taken port (stunnel would say it too, less plainly).
	l, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", o.Listen, err)
	}
	l.Close()

	work, err := os.MkdirTemp(o.WorkDir, "ferry-serve-")
	if err != nil {
		return fmt.Errorf("creating work directory: %w", err)
	}
	defer os.RemoveAll(work)
	// stunnel splits execArgs on blanks.
	if strings.ContainsAny(work, " \t") {
		return fmt.Errorf("work directory %q contains blanks; set TMPDIR to a path without", work)
	}
	if err := checkConfigValue("work directory", work); err != nil {
		return err
	}
	if certDir, err = privateCerts(certDir, work, bundle); err != nil {
		return err
	}
	control := filepath.Join(work, "control")
	if err := os.Mkdir(control, 0o700); err != nil {
		return err
	}
	var empty bool
	if device != "" {
		if empty, err = blockIsBlank(device); err != nil {
			return err
		}
		if o.RequireEmpty && !empty {
			log.WithField("device", device).Errorf("the first %d bytes of the target device are not all zeros: it holds a partition table, a file system or data", blankProbeSize)
			return ErrTargetNotEmpty
		}
		// Nothing in the directory but the device is written: no ACLs, xattrs, links or
		// device files to speak of.
		caps.Device, caps.DeviceSize, caps.Empty = filepath.Base(device), deviceBytes, empty
		caps.ACLs, caps.Xattrs = false, false
	} else {
		if empty, err = isEmptyVolume(dir); err != nil {
			return err
		}
		if o.RequireEmpty && !empty {
			return ErrTargetNotEmpty
		}
		caps.Empty = empty
		if empty {
			no := false
			caps.TargetACLs, caps.TargetXattrs = &no, &no
		}
		// Probed in the volume itself. A root without CAP_MKNOD (a pod that does not add it)
		// would otherwise lose device files with one line in its own log: rsync's mknod fails
		// on the server, and the client still exits 0.
		caps.Devices = canMknod(dir)
	}
	// Without chroot the daemon munges the links it stores; serve munges those already there
	// first and restores them all once the pass is over (links.go). A block-mode daemon
	// stores no links.
	munge := !caps.Root && device == ""
	var passStart unix.Timespec
	if munge {
		if passStart, err = passClock(); err != nil {
			return err
		}
		// Deferred before stunnel's stop, so it runs after: once no rsync can write any more.
		defer func() {
			n, err := unmungeLinks(dir, passStart)
			if err == nil {
				err = syncFS(dir)
			}
			log.WithField("links", n).Info("restored the exact targets of the symlinks written in this pass")
			if err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("restoring the targets of the symlinks written in this pass: %w", err))
			}
		}()
		if !empty {
			n, err := mungeLinks(dir)
			log.WithField("links", n).Info("munged the target's symlinks for the time the daemon serves")
			if err != nil {
				return fmt.Errorf("munging the target's symlinks: %w", err)
			}
		}
	}
	// Set when the target's manifest is published or could not be made; a first copy has
	// none to wait for.
	scanned := ""
	if !empty && device == "" {
		scanned = filepath.Join(work, "scanned")
	}
	files := map[string][]byte{
		filepath.Join(control, capabilitiesFile): caps.marshal(),
		filepath.Join(work, "rsyncd.conf"): []byte(rsyncdConfig{
			DataDir: dir, ControlDir: control, Sync: syncBin, Root: caps.Root, Device: caps.Device, Scanned: scanned, Sleep: sleepBin,
		}.render()),
	}
	files[filepath.Join(work, "stunnel.conf")] = []byte(stunnelServerConfig{
		Listen: stunnelAddr(o.Listen), CertDir: certDir, Rsync: rsync, RsyncdConf: filepath.Join(work, "rsyncd.conf"),
	}.render())
	for name, content := range files {
		if err := os.WriteFile(name, content, 0o600); err != nil {
			return err
		}
	}

	srv, err := startStunnelServer(ctx, stunnel, filepath.Join(work, "stunnel.conf"), o.Listen, log)
	if err != nil {
		return err
	}
	defer srv.stop()
	if scanned != "" {
		// Scan the target while the client scans its source: the manifest lets the client
		// send exactly what differs (restage.go), and says whether the target holds ACLs or
		// xattrs. Until it is published the client assumes it does.
		scanCtx, cancelScan := context.WithCancel(ctx)
		var (
			mu      sync.Mutex
			stopped bool
			scans   sync.WaitGroup
		)
		defer func() {
			mu.Lock()
			stopped = true
			mu.Unlock()
			cancelScan()
			scans.Wait()
		}()
		known := caps
		scans.Add(1)
		go func() {
			defer scans.Done()
			start := time.Now()
			acls, xattrs, err := writeManifest(scanCtx, dir, filepath.Join(control, manifestFile),
				scanOptions{Xattrs: caps.ACLs || caps.Xattrs, Unmunge: munge})
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return
			}
			ok := err == nil
			if err != nil {
				// Say "maybe": the client then copies them, and compares the whole volume.
				log.WithError(err).Warn("could not scan the target: the client will copy the whole volume")
				acls, xattrs = true, true
			} else {
				log.WithField("seconds", time.Since(start).Seconds()).Debug("scanned the target")
			}
			known.TargetACLs, known.TargetXattrs, known.Manifest = &acls, &xattrs, &ok
			if err := writeFileAtomic(filepath.Join(control, capabilitiesFile), known.marshal(), 0o600); err != nil {
				log.WithError(err).Warn("publishing the target's manifest")
			}
			if err := os.WriteFile(scanned, nil, 0o600); err != nil {
				log.WithError(err).Warn("publishing the target's manifest")
			}
		}()
	}
	log.WithFields(logrus.Fields{"dir": dir, "device": device, "deviceBytes": deviceBytes, "listen": o.Listen, "root": caps.Root, "acls": caps.ACLs, "xattrs": caps.Xattrs, "devices": caps.Devices}).
		Info("serving: waiting for the client")
	if o.ReadyFile != "" {
		if err := os.WriteFile(o.ReadyFile, nil, 0o600); err != nil {
			return fmt.Errorf("writing the ready file: %w", err)
		}
		defer os.Remove(o.ReadyFile)
	}
	if o.Ready != nil {
		o.Ready()
	}

	return waitForClient(ctx, srv, control, log)
}

// waitForClient waits for the client's report: nil when it reported completion (after the
// target was flushed to disk), an error when it gave up, stunnel failed or ctx ended.
func waitForClient(ctx context.Context, srv *stunnelServer, control string, log logrus.FieldLogger) error {
	// Two stats a tick: a short one ends the pass sooner after the report.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped before the client reported completion: %w", ctx.Err())
		case <-srv.done:
			return fmt.Errorf("stunnel exited unexpectedly (%v): %s", srv.err, srv.tail)
		case <-tick.C:
		}
		// rsync writes an upload under a temporary name and renames it when complete.
		if b, err := os.ReadFile(filepath.Join(control, completeFile)); err == nil {
			fields := logrus.Fields{}
			if e, err := ParseReport(b); err == nil {
				fields = logrus.Fields{"files": e.Files, "bytes": e.BytesTotal, "filesCopied": e.FilesTransferred,
					"bytesSent": e.BytesSent, "attempts": e.Attempts, "warnings": e.Warnings}
			}
			drain(srv, log)
			log.WithFields(fields).Info("the client reported completion; the target is flushed to disk")
			return nil
		}
		if b, err := os.ReadFile(filepath.Join(control, failedFile)); err == nil {
			reason := strings.TrimSpace(string(b))
			if e, err := ParseReport(b); err == nil {
				reason = e.Error
			}
			drain(srv, log)
			return fmt.Errorf("the client gave up: %s", reason)
		}
	}
}

// ErrTargetNotEmpty: serve --require-empty found data in the target. serve exits with
// ExitTargetNotEmpty, which the sidecar reads from the server pod.
var ErrTargetNotEmpty error = targetNotEmpty{}

// ExitTargetNotEmpty is serve's exit status for ErrTargetNotEmpty.
const ExitTargetNotEmpty = 3

type targetNotEmpty struct{}

func (targetNotEmpty) Error() string {
	return "the target volume holds data ferry did not write (--require-empty); nothing was changed"
}

func (targetNotEmpty) ExitCode() int { return ExitTargetNotEmpty }

// isEmptyVolume reports whether dir holds nothing but lost+found: a first copy.
func isEmptyVolume(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading target directory %s: %w", dir, err)
	}
	for _, n := range names {
		if n != "lost+found" {
			return false, nil
		}
	}
	return true, nil
}

// drain waits until no rsync started by stunnel is left (the client's last connection).
func drain(srv *stunnelServer, log logrus.FieldLogger) {
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) {
		if n := groupMembers(srv.cmd.Process.Pid); n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Warn("an rsync connection is still open after the client's report; closing it")
}

// groupMembers counts the processes in process group pgid other than its leader.
func groupMembers(pgid int) int {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == pgid {
			continue
		}
		stat, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may contain blanks and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 2 && fields[2] == strconv.Itoa(pgid) && fields[0] != "Z" {
			n++
		}
	}
	return n
}

// checkDir resolves a directory argument and checks it is a directory that the
// configurations can name.
func checkDir(what, dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("%s is required", what)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s %s does not exist", what, abs)
		}
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s %s is not a directory", what, abs)
	}
	if err := checkConfigValue(what, abs); err != nil {
		return "", err
	}
	return abs, nil
}
