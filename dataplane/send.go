package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// ProgressMode is how `send` reports progress on its output.
type ProgressMode string

const (
	ProgressHuman ProgressMode = "human" // a line per second for people
	ProgressJSON  ProgressMode = "json"  // one Report per line, nothing else
	ProgressNone  ProgressMode = "none"
)

// DefaultStreams is the number of parallel rsync streams of a transfer.
const DefaultStreams = 4

// SendOptions configure Send.
type SendOptions struct {
	// Dir is the source directory (the volume). It is only read.
	Dir string
	// Device is the source block device, copied instead of a directory (block.go). It is only
	// read. Exactly one of Dir and Device is set.
	Device string
	// To is the server's host:port.
	To string
	// CertDir holds the client bundle: ca.crt, tls.crt, tls.key.
	CertDir string
	// SNI is the TLS server name sent (OpenShift passthrough Routes route by it). Empty: the
	// host of To when it is a name, none when it is an IP address.
	SNI string
	// Checksum: the copy compares every file's content instead of size and mtime (it reads
	// every file on both sides).
	Checksum bool
	// Verify: after the copy, a verify pass (verify.go) compares every file by content and
	// fails the attempt on any difference; the next attempt copies by content. The done
	// report's Verified says what was compared.
	Verify bool
	// Compress compresses file data on the wire (for slow links; off by default).
	Compress bool
	// BwLimitKBps limits the whole transfer to this many KiB/s (0: no limit).
	BwLimitKBps int
	// Streams is the number of parallel rsync streams (default DefaultStreams).
	Streams int
	// Progress and Out: where and how progress goes (Out is typically stdout).
	Progress ProgressMode
	Out      io.Writer
	// ProgressInterval is the time between progress lines (default 1s).
	ProgressInterval time.Duration
	// MaxAttempts, Backoff, MaxBackoff: retries of transient failures.
	MaxAttempts int
	Backoff     time.Duration
	MaxBackoff  time.Duration
	// Timeout ends an rsync whose connection moved no data for this long (default 10m).
	Timeout time.Duration
	// WorkDir is where the per-transfer file lists and configuration go (default $TMPDIR).
	WorkDir string
	Log     logrus.FieldLogger
	// planUnitWeight: tests force fine-grained splitting.
	planUnitWeight int64
	// afterCopy: tests change the target between an attempt's copy and its verify pass.
	afterCopy func(attempt int)
	// onCompare: tests learn how a re-stage was planned (a plan, or why the whole volume went).
	onCompare func(p *restagePlan, fallback string)
}

// Send copies o.Dir to the server at o.To: several rsync streams, each through its own stunnel
// client, then a pass over the volume root, then a flush of the target to disk, then the
// completion notice that lets the server exit. Transient failures are retried with backoff.
// It returns the done report, or an error (an *RsyncError when rsync failed) after the error
// report was written.
func Send(ctx context.Context, o SendOptions) (Report, error) {
	s, err := newSender(o)
	if err != nil {
		if s != nil {
			s.emit(Report{Type: ReportError, Attempt: 1, Error: err.Error(), ExitCode: exitCodeOf(err)})
		}
		return Report{}, err
	}
	defer os.RemoveAll(s.work)
	bo := backoff{initial: s.o.Backoff, max: s.o.MaxBackoff}
	for attempt := 1; ; attempt++ {
		done, err := s.attempt(ctx, attempt)
		if err == nil {
			done.Attempts = attempt
			s.emit(done)
			return done, nil
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted: %w", ctx.Err())
		}
		if !retryable(err) || attempt >= s.o.MaxAttempts {
			if ctx.Err() == nil && retryable(err) {
				err = fmt.Errorf("giving up after %d attempts: %w", attempt, err)
			}
			s.emit(Report{Type: ReportError, Attempt: attempt, Error: err.Error(), ExitCode: exitCodeOf(err), Verified: verified(err)})
			s.tellServerFailed(err)
			return Report{}, err
		}
		wait := bo.delay(attempt)
		s.log.WithError(err).Warnf("attempt %d failed; retrying in %s", attempt, wait)
		s.emit(Report{Type: ReportRetry, Attempt: attempt, Error: err.Error(), BackoffSeconds: wait.Seconds(), Verified: verified(err)})
		if err := sleepCtx(ctx, wait); err != nil {
			err = fmt.Errorf("interrupted: %w", err)
			s.emit(Report{Type: ReportError, Attempt: attempt, Error: err.Error(), ExitCode: exitCodeOf(err)})
			return Report{}, err
		}
	}
}

func exitCodeOf(err error) int {
	var c interface{ ExitCode() int }
	if errors.As(err, &c) && c.ExitCode() > 0 {
		return c.ExitCode()
	}
	return 1
}

// sender holds what all attempts of one Send share.
type sender struct {
	o       SendOptions
	log     logrus.FieldLogger
	src     string
	device  bool // src is a block device (block.go)
	rsync   string
	rsh     string // rsync's --rsh: the stunnel client, one per rsync process
	work    string
	local   capabilities
	start   time.Time
	out     *syncWriter
	fetches atomic.Int32
	// contentCopy: a verify pass found differences, so later attempts copy by content (size
	// and mtime did not show them); repaired counts them.
	contentCopy bool
	repaired    int64
}

func newSender(o SendOptions) (*sender, error) {
	s := &sender{o: o, log: o.Log, start: time.Now()}
	if s.log == nil {
		s.log = logrus.StandardLogger()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	s.out = &syncWriter{w: o.Out}
	switch o.Progress {
	case "":
		s.o.Progress = ProgressHuman
	case ProgressHuman, ProgressJSON, ProgressNone:
	default:
		return s, notRetryable{fmt.Errorf("--progress must be human, json or none, not %q", o.Progress)}
	}
	if o.Streams <= 0 {
		s.o.Streams = DefaultStreams
	}
	if o.MaxAttempts <= 0 {
		s.o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff <= 0 {
		s.o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		s.o.MaxBackoff = DefaultMaxBackoff
	}
	if o.Timeout <= 0 {
		s.o.Timeout = 10 * time.Minute
	}
	if o.ProgressInterval <= 0 {
		s.o.ProgressInterval = time.Second
	}
	if o.BwLimitKBps < 0 {
		return s, notRetryable{fmt.Errorf("--bwlimit must not be negative")}
	}
	var err error
	localDir := ""
	switch {
	case o.Dir != "" && o.Device != "":
		return s, notRetryable{fmt.Errorf("--dir and --device exclude each other: send a directory or a block device")}
	case o.Device != "":
		s.device = true
		if s.src, _, err = checkDevice("source device", o.Device); err != nil {
			return s, notRetryable{err}
		}
		localDir = filepath.Dir(s.src)
	default:
		if o.Dir == "" {
			return s, notRetryable{fmt.Errorf("a source is required: --dir (a directory) or --device (a block device)")}
		}
		if s.src, err = checkDir("source directory", o.Dir); err != nil {
			return s, notRetryable{err}
		}
		localDir = s.src
	}
	host, port, err := net.SplitHostPort(o.To)
	if err != nil || host == "" || port == "" {
		return s, notRetryable{fmt.Errorf("--to %q: want host:port", o.To)}
	}
	if _, err := listenPort(o.To); err != nil {
		return s, notRetryable{fmt.Errorf("--to %q: bad port", o.To)}
	}
	sni := o.SNI
	if sni == "" && net.ParseIP(host) == nil {
		sni = host
	}
	certDir, err := filepath.Abs(o.CertDir)
	if err != nil {
		return s, notRetryable{err}
	}
	for what, v := range map[string]string{"certificate directory": certDir, "--to": o.To, "--sni": sni} {
		if err := checkConfigValue(what, v); err != nil {
			return s, notRetryable{err}
		}
	}
	bundle, err := LoadBundle(certDir, ClientName)
	if err != nil {
		return s, notRetryable{err}
	}
	if s.rsync, err = findRsync(); err != nil {
		return s, notRetryable{err}
	}
	stunnel, err := findStunnel()
	if err != nil {
		return s, notRetryable{err}
	}
	rs, err := probeRsync(context.Background(), s.rsync)
	if err != nil {
		return s, notRetryable{err}
	}
	if s.local, err = probeCapabilities(localDir, rs); err != nil {
		return s, notRetryable{err}
	}
	if s.work, err = os.MkdirTemp(o.WorkDir, "ferry-send-"); err != nil {
		return s, notRetryable{fmt.Errorf("creating work directory: %w", err)}
	}
	if err := checkConfigValue("work directory", s.work); err != nil {
		os.RemoveAll(s.work)
		return s, notRetryable{err}
	}
	if certDir, err = privateCerts(certDir, s.work, bundle); err != nil {
		os.RemoveAll(s.work)
		return s, notRetryable{err}
	}
	conf := filepath.Join(s.work, "stunnel.conf")
	content := stunnelClientConfig{Connect: stunnelAddr(o.To), SNI: sni, CertDir: certDir}.render()
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		os.RemoveAll(s.work)
		return s, notRetryable{err}
	}
	if s.rsh, err = rshCommand(stunnel, conf); err != nil {
		os.RemoveAll(s.work)
		return s, notRetryable{err}
	}
	return s, nil
}

// emit writes one report in the chosen progress form.
func (s *sender) emit(e Report) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if e.ElapsedSeconds == 0 && e.Type != ReportRetry {
		e.ElapsedSeconds = time.Since(s.start).Round(time.Millisecond).Seconds()
	}
	switch s.o.Progress {
	case ProgressJSON:
		_, _ = s.out.Write(e.Marshal())
	case ProgressHuman:
		_, _ = s.out.Write([]byte(e.Human() + "\n"))
	}
}

// attempt runs the whole transfer once.
func (s *sender) attempt(ctx context.Context, attempt int) (Report, error) {
	if s.device {
		return s.attemptDevice(ctx, attempt)
	}
	log := s.log.WithField("attempt", attempt)
	streams := s.o.Streams
	phase := time.Now()
	// The first contact (the server's capabilities) runs while the source is walked: scanned
	// into a manifest when the target may hold an earlier pass to compare with (restage.go),
	// else planned for the whole-volume copy.
	type fetched struct {
		caps     capabilities
		manifest string
		err      error
	}
	compare := !s.o.Checksum && !s.contentCopy
	early := make(chan fetched, 1)
	fetchCtx, cancelFetch := context.WithCancel(ctx)
	defer cancelFetch()
	go func() {
		c, m, err := s.fetchControl(fetchCtx, compare)
		early <- fetched{c, m, err}
	}()
	planOpts := planOptions{Streams: streams, UnitWeight: s.o.planUnitWeight, ProbeXattrs: s.local.ACLs || s.local.Xattrs}
	var (
		plan   *streamPlan
		server capabilities
		err    error
	)
	if !compare {
		// A copy by content reads every file anyway: nothing to gain from a comparison.
		plan, err = planStreams(s.src, planOpts)
		if err != nil {
			cancelFetch() // no point in waiting for the server
		}
		f := <-early
		if err != nil {
			return Report{}, notRetryable{err}
		}
		if f.err != nil {
			return Report{}, f.err
		}
		server = f.caps
		if server.Device != "" {
			return Report{}, errModeMismatch(server, false)
		}
	} else {
		scan := s.scanSource(ctx, attempt)
		defer scan.stop()
		f := <-early
		if f.err != nil {
			return Report{}, f.err
		}
		if f.manifest != "" {
			defer os.Remove(f.manifest)
		}
		server = f.caps
		if server.Device != "" {
			return Report{}, errModeMismatch(server, false)
		}
		if !server.Empty {
			p, why, err := s.compareVolumes(ctx, server, f.manifest, scan, log)
			if err != nil {
				return Report{}, err
			}
			if s.o.onCompare != nil {
				s.o.onCompare(p, why)
			}
			if p != nil {
				log.WithField("seconds", time.Since(phase).Seconds()).Debug("compared source and target")
				return s.sendChanges(ctx, attempt, server, p, log)
			}
			log.WithField("reason", why).Info("copying the whole volume: its differences cannot be listed")
		}
		scan.stop()
		if plan, err = planStreams(s.src, planOpts); err != nil {
			return Report{}, notRetryable{err}
		}
	}
	log.WithField("seconds", time.Since(phase).Seconds()).Debug("walked the source")
	// Whether the target already has ACLs or xattrs (the server looks while the client walks):
	// if the answer is still out and matters, wait for it, since copying ACLs and xattrs
	// triples the time rsync takes to find unchanged files.
	matters := (s.local.ACLs && server.ACLs && !plan.ACLs) || (s.local.Xattrs && server.Xattrs && !plan.Xattrs)
	for wait := 0; matters && (server.TargetACLs == nil || server.TargetXattrs == nil) && wait < 40; wait++ {
		if wait > 0 {
			if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
				return Report{}, err
			}
		}
		if server, err = s.fetchCapabilities(ctx); err != nil {
			return Report{}, err
		}
	}
	log.WithField("seconds", time.Since(phase).Seconds()).Debug("server capabilities known")
	if plan.ReadOnlyDirs && !server.Root && streams > 1 {
		log.Info("the source has directories without write permission and the server is not root: using one stream")
		if plan, err = planStreams(s.src, planOptions{Streams: 1, ProbeXattrs: s.local.ACLs || s.local.Xattrs}); err != nil {
			return Report{}, notRetryable{err}
		}
	}
	opts := rsyncOptions{
		// ACLs and xattrs cost rsync work for every file: asked for only when both sides can
		// keep them and either side has some (the target's must be removed if the source's are).
		ACLs:     s.local.ACLs && server.ACLs && (plan.ACLs || unknownOrTrue(server.TargetACLs)),
		Xattrs:   s.local.Xattrs && server.Xattrs && (plan.Xattrs || unknownOrTrue(server.TargetXattrs)),
		Checksum: s.o.Checksum || s.contentCopy,
		Compress: s.o.Compress,
		Inplace:  server.Empty,
		Timeout:  s.o.Timeout,
		// A server that cannot create device files (not root, or without CAP_MKNOD) loses
		// them, and rsync tells only the server's log: they are left out and reported instead.
		NoDevices: !server.Devices,
	}
	var skipped []string
	var skippedCount int64
	if opts.NoDevices && plan.DeviceCount > 0 {
		skipped, skippedCount = plan.Devices, plan.DeviceCount
		more := ""
		if int64(len(skipped)) < skippedCount {
			more = fmt.Sprintf(" (and %d more)", skippedCount-int64(len(skipped)))
		}
		log.WithField("devices", skippedCount).Warnf("the server cannot create device files (it is not root, or lacks CAP_MKNOD): skipping %s%s",
			strings.Join(skipped, ", "), more)
	}
	if s.o.BwLimitKBps > 0 {
		opts.BwLimitKBps = max(1, s.o.BwLimitKBps/plan.Streams)
	}
	log.WithFields(logrus.Fields{
		"files": plan.Files, "bytes": plan.Bytes, "jobs": len(plan.Jobs), "streams": plan.Streams,
		"acls": opts.ACLs, "xattrs": opts.Xattrs, "serverRoot": server.Root, "firstCopy": server.Empty, "byContent": opts.Checksum,
	}).Info("sending")

	tracker := newProgressTracker(plan, attempt, s.start)
	stopReport := s.reportProgress(tracker)
	phase = time.Now()
	stats, vanished, err := s.runJobs(ctx, plan, opts, tracker, attempt)
	stopReport()
	if err != nil {
		return Report{}, err
	}
	log.WithField("seconds", time.Since(phase).Seconds()).Debug("streams done")
	phase = time.Now()

	// Top-level deletions and the root directory's own attributes, after the streams (which
	// changed the root's mtime by creating entries in it).
	rootStats, rootVanished, err := s.runRsync(ctx, opts.rootArgs(s.src, server.RootAttrs), log.WithField("pass", "root"), nil)
	if err != nil {
		return Report{}, err
	}
	stats.add(rootStats)
	vanished += rootVanished
	log.WithField("seconds", time.Since(phase).Seconds()).Debug("root pass done")

	done := Report{
		Type:             ReportDone,
		Attempt:          attempt,
		BytesTotal:       plan.Bytes,
		Files:            plan.Files,
		FilesTotal:       plan.Files,
		BytesSent:        stats.BytesSent,
		FilesTransferred: stats.FilesTransferred,
		Warnings:         vanished + int(skippedCount),
		Skipped:          skipped,
		SkippedCount:     skippedCount,
		Attempts:         attempt,
		ElapsedSeconds:   time.Since(s.start).Round(time.Millisecond).Seconds(),
		Time:             time.Now().UTC(),
	}
	return s.complete(ctx, attempt, opts, server, done, stats, log)
}

// complete ends a successful copy: the verify pass if asked for, then the completion notice.
func (s *sender) complete(ctx context.Context, attempt int, opts rsyncOptions, server capabilities, done Report, stats rsyncStats, log logrus.FieldLogger) (Report, error) {
	done.Attempts = attempt
	done.ElapsedSeconds, done.Time = time.Since(s.start).Round(time.Millisecond).Seconds(), time.Now().UTC()
	if s.o.afterCopy != nil {
		s.o.afterCopy(attempt)
	}
	if s.o.Verify {
		v, err := s.verify(ctx, attempt, opts, server.RootAttrs, done)
		if err != nil {
			return Report{}, err
		}
		done.Verified = &v
		done.ElapsedSeconds, done.Time = time.Since(s.start).Round(time.Millisecond).Seconds(), time.Now().UTC()
	}
	// The report goes to the module that flushes the volume before it accepts anything: once
	// it arrived, the data is on the target's disk and the server may exit.
	flushStart := time.Now()
	if err := s.upload(ctx, doneModule, completeFile, done.Marshal()); err != nil {
		return Report{}, err
	}
	log.WithFields(logrus.Fields{"filesCopied": stats.FilesTransferred, "deleted": stats.Deleted, "bytesSent": stats.BytesSent,
		"seconds": time.Since(flushStart).Seconds()}).Info("done; target flushed to disk")
	return done, nil
}

// unknownOrTrue reads an optional flag, taking "not known yet" for true.
func unknownOrTrue(b *bool) bool { return b == nil || *b }

// fetchCapabilities downloads the server's capabilities file; it is also the first contact,
// so a server that is not up yet fails here (and is retried).
func (s *sender) fetchCapabilities(ctx context.Context) (capabilities, error) {
	c, _, err := s.fetchControl(ctx, false)
	return c, err
}

// fetchControl downloads the server's capabilities and, if asked and already published, the
// target's manifest (restage.go) in the same connection. It returns the manifest's local path
// ("" when there was none yet); the caller removes it.
func (s *sender) fetchControl(ctx context.Context, withManifest bool) (capabilities, string, error) {
	n := s.fetches.Add(1)
	dir := filepath.Join(s.work, fmt.Sprintf("server-%d", n))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return capabilities{}, "", err
	}
	args := []string{"--no-motd", daemonURL(controlModule, capabilitiesFile)}
	if withManifest {
		// Not there yet (the server is still scanning) is no error.
		args = append(args, "--ignore-missing-args", daemonURL(controlModule, manifestFile))
	}
	if _, _, err := s.runRsync(ctx, append(args, dir+"/"), s.log.WithField("pass", "connect"), nil); err != nil {
		os.RemoveAll(dir)
		return capabilities{}, "", err
	}
	b, err := os.ReadFile(filepath.Join(dir, capabilitiesFile))
	manifest := ""
	if _, statErr := os.Stat(filepath.Join(dir, manifestFile)); statErr == nil && err == nil {
		manifest = filepath.Join(s.work, fmt.Sprintf("target-%d.%s", n, manifestFile))
		err = os.Rename(filepath.Join(dir, manifestFile), manifest)
	}
	os.RemoveAll(dir)
	if err != nil {
		return capabilities{}, "", err
	}
	c, err := parseCapabilities(b)
	if err != nil {
		os.Remove(manifest)
		return c, "", notRetryable{err}
	}
	return c, manifest, nil
}

// upload puts content into module as name.
func (s *sender) upload(ctx context.Context, module, name string, content []byte) error {
	local := filepath.Join(s.work, name)
	if err := os.WriteFile(local, content, 0o600); err != nil {
		return err
	}
	_, _, err := s.runRsync(ctx, []string{"--no-motd", local, daemonURL(module, name)}, s.log.WithField("pass", "report"), nil)
	return err
}

// tellServerFailed tells the server that this client gave up, so it exits too (best effort).
func (s *sender) tellServerFailed(cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	e := Report{Type: ReportError, Error: cause.Error(), ExitCode: exitCodeOf(cause), Time: time.Now().UTC()}
	// Through the done module: the control module is read-only.
	if err := s.upload(ctx, doneModule, failedFile, e.Marshal()); err != nil {
		s.log.WithError(err).Debug("could not report the failure to the server")
	}
}

// runJobs runs the copy's jobs (forEachJob) and sums their statistics.
func (s *sender) runJobs(ctx context.Context, plan *streamPlan, opts rsyncOptions, tracker *progressTracker, attempt int) (rsyncStats, int, error) {
	var (
		mu       sync.Mutex
		total    rsyncStats
		vanished int
	)
	err := forEachJob(ctx, plan, func(ctx context.Context, stream, i int, j *streamJob) error {
		args, err := s.writeJobFiles(fmt.Sprintf("a%d-job%d", attempt, i), j, opts)
		if err != nil {
			return err
		}
		st, v, err := s.runRsync(ctx, args, s.log.WithFields(logrus.Fields{"attempt": attempt, "stream": stream}),
			func(p rsyncProgress) { tracker.update(i, p) })
		mu.Lock()
		total.add(st)
		vanished += v
		mu.Unlock()
		tracker.finish(i, st)
		return err
	})
	return total, vanished, err
}

// forEachJob runs run for each of the plan's jobs, one goroutine per stream, each stream's
// jobs in order. The first failure stops the others.
func forEachJob(ctx context.Context, plan *streamPlan, run func(ctx context.Context, stream, i int, j *streamJob) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	byStream := map[int][]int{}
	for i, j := range plan.Jobs {
		byStream[j.Stream] = append(byStream[j.Stream], i)
	}
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for stream, jobs := range byStream {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, i := range jobs {
				if err := run(ctx, stream, i, plan.Jobs[i]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// writeJobFiles writes a job's --files-from list and filter rules (NUL-separated: names may
// hold newlines) under the work directory as name.* and returns its rsync arguments.
func (s *sender) writeJobFiles(name string, j *streamJob, opts rsyncOptions) ([]string, error) {
	base := filepath.Join(s.work, name)
	var list bytes.Buffer
	for _, e := range j.Entries {
		// A leading slash keeps a name starting with '#' or ';' from reading as a comment;
		// rsync strips it. (A "./" prefix would make the root an implied directory, whose
		// attributes an unprivileged receiver may not set.)
		list.WriteString("/" + e)
		list.WriteByte(0)
	}
	if err := os.WriteFile(base+".files", list.Bytes(), 0o600); err != nil {
		return nil, err
	}
	filter := ""
	if len(j.Rules) > 0 {
		var rules bytes.Buffer
		for _, r := range j.Rules {
			rules.WriteString(r)
			rules.WriteByte(0)
		}
		filter = base + ".filter"
		if err := os.WriteFile(filter, rules.Bytes(), 0o600); err != nil {
			return nil, err
		}
	}
	return opts.streamArgs(j, base+".files", filter, s.src), nil
}

// runRsync runs one rsync through the tunnel. Exit code 24 (source files vanished) counts as
// success with a warning (the returned count is 1).
func (s *sender) runRsync(ctx context.Context, args []string, log logrus.FieldLogger, onProgress func(rsyncProgress)) (rsyncStats, int, error) {
	return s.runRsyncWith(ctx, args, log, rsyncHooks{progress: onProgress})
}

// rsyncHooks follow an rsync process.
type rsyncHooks struct {
	// started gets the process ID once it runs.
	started func(pid int)
	// progress gets each --info=progress2 line.
	progress func(rsyncProgress)
	// line gets each other line of output, and says whether it used it (others are logged).
	line func(string) bool
}

// runRsyncWith is runRsync, followed by hooks.
func (s *sender) runRsyncWith(ctx context.Context, args []string, log logrus.FieldLogger, hooks rsyncHooks) (rsyncStats, int, error) {
	var stats rsyncStats
	cmd := childCommand(ctx, s.rsync, append([]string{"--rsh=" + s.rsh}, args...)...)
	cmd.Env = rsyncEnv()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return stats, 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return stats, 0, err
	}
	if err := cmd.Start(); err != nil {
		return stats, 0, notRetryable{fmt.Errorf("starting rsync: %w", err)}
	}
	if hooks.started != nil {
		hooks.started(cmd.Process.Pid)
	}
	tail := &stderrTail{}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		forEachLine(stdout, func(line string) {
			if hooks.line != nil && hooks.line(line) {
				return
			}
			if p, ok := parseProgress2(line); ok {
				if hooks.progress != nil {
					hooks.progress(p)
				}
				return
			}
			if !stats.parseStatsLine(line) {
				log.Debug(line)
			}
		})
	}()
	go func() {
		defer wg.Done()
		// rsync's errors and warnings, and the stunnel client's (it shares rsync's stderr).
		rlog := log.WithField("process", "rsync")
		forEachLine(stderr, func(line string) {
			if stunnelCloseTimeout.MatchString(line) {
				return
			}
			rlog.Warn(line)
			tail.add(stunnelLogPrefix.ReplaceAllString(line, "stunnel: "))
		})
	}()
	wg.Wait()
	err = rsyncExitError(cmd.Wait(), tail)
	killGroup(cmd)
	var rerr *RsyncError
	if errors.As(err, &rerr) && rerr.Code == RsyncVanished {
		log.Warn("some source files vanished while they were copied (normal while the application runs)")
		return stats, 1, nil
	}
	if err != nil && ctx.Err() != nil {
		return stats, 0, ctx.Err()
	}
	return stats, 0, err
}

// stunnelCloseTimeout is what the stunnel client says at the end of every connection: rsync
// waits for its remote shell to exit before it closes its end, and the client, with
// TIMEOUTclose = 0, does not wait for that (the server has closed by then).
var stunnelCloseTimeout = regexp.MustCompile(`LOG3\[[^\]]*\]: transfer: s_poll_wait: TIMEOUTclose exceeded: closing$`)

// stunnelLogPrefix is the timestamp and level stunnel puts before its messages.
var stunnelLogPrefix = regexp.MustCompile(`^\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d LOG\d\[[^\]]*\]: `)

// rsyncEnv is the environment of rsync: ours without RSYNC_* settings (a stray RSYNC_PROXY or
// RSYNC_CONNECT_PROG would change how it connects), in the C locale (stable messages).
func rsyncEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RSYNC_") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// reportProgress emits a progress report every interval until the returned stop is called.
func (s *sender) reportProgress(t interface{ report(time.Time) Report }) (stop func()) {
	if s.o.Progress == ProgressNone {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.emit(t.report(time.Now()))
		tick := time.NewTicker(s.o.ProgressInterval)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				s.emit(t.report(now))
			}
		}
	}()
	return func() {
		close(quit)
		wg.Wait()
	}
}
