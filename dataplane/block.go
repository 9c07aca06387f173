package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Block mode: a volume with volumeMode Block is one device, not a tree. `send --device` copies
// the device's content into the device of `serve --device` with one rsync: the source device
// read as a file (--copy-devices), written into the existing target device in place
// (--write-devices). Everything around it (certificates, stunnel, retries, reports, the flush
// before the completion notice) is the directory mode's.
//
// The delta transfer does the work a first copy and a re-stage both need: the receiver reads
// the target and sends a checksum of each block, the sender reads the source and sends only
// the blocks that differ; a block equal to the target's at the same offset is not even
// written. A re-stage therefore sends the changed blocks and the checksums, and a first copy
// into a fresh (zeroed, thin) volume leaves the source's zero regions unwritten, so they stay
// unallocated: no --sparse needed (see blockArgs for why it is not used).

// blockSize is rsync's --block-size for devices: its maximum (rsync refuses more than 128 KiB
// with protocol 30 and newer). rsync's default, the square root of the size, reaches the same
// from 16 GiB up; below that it means more checksums for no gain that matters. The sender
// holds about 40 bytes per block (rolling sum, strong sum, offset, hash chain): 320 MiB for a
// 1 TiB device at 128 KiB, twice that at 64 KiB. On the wire the checksums are about 20 bytes
// per block, 0.015 % of the device, on every pass. The price: a changed 4 KiB page resends its
// whole 128 KiB block.
const blockSize = 128 << 10

// blankProbeSize is how much of a target device --require-empty reads: everything that marks a
// device as in use lives there. Partition tables (MBR at 0, GPT's header and entries in the
// first 17 KiB), file system superblocks (XFS at 0, ext2/3/4 at 1 KiB, ISO 9660 at 32 KiB,
// btrfs at 64 KiB), LVM's label (sector 1), LUKS's header (0), swap's (the end of the first
// page), and ZFS's first two labels (0 and 256 KiB). Partitioning tools leave the first MiB to
// these for alignment, so a device in use by anything has something here.
const blankProbeSize = 1 << 20

// deviceName is what a device's name in its directory may be: it is written into the daemon's
// filter rules, which split on blanks and treat *, ? and [ as wildcards.
var deviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// checkDevice resolves a device argument, checks it is a block device whose name the daemon
// configuration can hold, and returns its path and size.
func checkDevice(what, path string) (string, int64, error) {
	if path == "" {
		return "", 0, fmt.Errorf("%s is required", what)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", 0, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", 0, fmt.Errorf("%s %s does not exist", what, abs)
		}
		return "", 0, fmt.Errorf("%s: %w", what, err)
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return "", 0, fmt.Errorf("%s %s is not a block device", what, abs)
	}
	if err := checkConfigValue(what, abs); err != nil {
		return "", 0, err
	}
	if !deviceName.MatchString(filepath.Base(abs)) {
		return "", 0, fmt.Errorf("%s %s: the name must be letters, digits, '.', '_', '+' and '-'", what, abs)
	}
	size, err := deviceSize(abs)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", what, err)
	}
	return abs, size, nil
}

// deviceSize opens the device for reading (root, or a user its mode lets in) and returns its
// size.
func deviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Seek(0, io.SeekEnd)
}

// blockIsBlank reports whether the first blankProbeSize bytes of the device (all of it if
// smaller) are zeros. It reads past the page cache (O_DIRECT where the device allows it): what
// counts is what the device holds.
func blockIsBlank(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		if f, err = os.Open(path); err != nil {
			return false, err
		}
	}
	defer f.Close()
	// O_DIRECT wants an aligned buffer: a page-aligned one from mmap.
	buf, err := unix.Mmap(-1, 0, blankProbeSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return false, err
	}
	defer func() { _ = unix.Munmap(buf) }()
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	return bytes.Count(buf[:n], []byte{0}) == n, nil
}

// blockArgs are the arguments of the one rsync of a block transfer: the source device src into
// the server's device named device.
func (o rsyncOptions) blockArgs(src, device string) []string {
	args := []string{
		// The source device is read as a file, the target device written as one: in place,
		// never under a temporary name (--write-devices implies --inplace), so the target
		// needs no room for a second copy and blocks equal at the same offset are not
		// written at all.
		"--copy-devices", "--write-devices",
		// A device node's mtime and size say nothing about its content: every pass compares
		// the blocks.
		"--ignore-times",
		// Delta transfer also where rsync would default to whole files.
		"--no-whole-file",
		"--block-size=" + strconv.Itoa(blockSize),
		// No owner, mode or times: the target node belongs to the target pod (and nothing
		// else: no -r, -l, -D, which the server refuses).
		//
		// Not --sparse: rsync 3.5.0 punches holes for zero runs with fallocate(PUNCH_HOLE,
		// then ZERO_RANGE), which a block device accepts only on 512-byte boundaries; a zero
		// run starting mid-sector fails both, and the transfer with "write failed ...
		// Invalid argument" (code 11). Zero regions stay unallocated without it when the
		// target holds zeros there already (a fresh volume): they match and are skipped.
		"--no-human-readable",
		"--info=progress2", "--stats",
	}
	if o.Compress {
		args = append(args, "--compress")
	}
	if o.BwLimitKBps > 0 {
		args = append(args, "--bwlimit="+strconv.Itoa(o.BwLimitKBps))
	}
	if o.Timeout > 0 {
		args = append(args, "--timeout="+strconv.Itoa(int(o.Timeout.Seconds())))
	}
	return append(args, src, daemonURL(dataModule, device))
}

// errModeMismatch is a client and a server of different modes.
func errModeMismatch(server capabilities, device bool) error {
	if device {
		return notRetryable{errors.New("the server writes into a directory (serve --dir), but this client sends a block device (send --device): " +
			"both sides must use --device for a volume with volumeMode Block")}
	}
	return notRetryable{fmt.Errorf("the server writes into a block device (serve --device, %s), but this client sends a directory (send --dir): "+
		"both sides must use --dir for a volume with volumeMode Filesystem", server.Device)}
}

// errTargetTooSmall: the source device does not fit into the target's.
func errTargetTooSmall(src string, srcSize int64, server capabilities) error {
	return notRetryable{fmt.Errorf("the source device %s is %d bytes, the target device %d bytes: "+
		"the target volume must be at least as large as the source", src, srcSize, server.DeviceSize)}
}

// attemptDevice runs a block transfer once.
func (s *sender) attemptDevice(ctx context.Context, attempt int) (Report, error) {
	log := s.log.WithField("attempt", attempt)
	server, err := s.fetchCapabilities(ctx)
	if err != nil {
		return Report{}, err
	}
	if server.Device == "" {
		return Report{}, errModeMismatch(server, true)
	}
	// Checked every attempt: the source may have grown (expanded) since the last.
	size, err := deviceSize(s.src)
	if err != nil {
		return Report{}, notRetryable{fmt.Errorf("source device: %w", err)}
	}
	if size > server.DeviceSize {
		return Report{}, errTargetTooSmall(s.src, size, server)
	}
	opts := rsyncOptions{Compress: s.o.Compress, BwLimitKBps: s.o.BwLimitKBps, Timeout: s.o.Timeout}
	log.WithFields(logrus.Fields{"device": s.src, "bytes": size, "targetBytes": server.DeviceSize}).Info("sending the device")
	plan := &streamPlan{Streams: 1, Bytes: size, Files: 1, Jobs: []*streamJob{{Weight: max(size, 1), Bytes: size}}}
	tracker := newProgressTracker(plan, attempt, s.start)
	stopReport := s.reportProgress(tracker)
	stats, _, err := s.runRsync(ctx, opts.blockArgs(s.src, server.Device), log.WithField("pass", "device"),
		func(p rsyncProgress) { tracker.update(0, p) })
	tracker.finish(0, stats)
	stopReport()
	if err != nil {
		return Report{}, err
	}
	var changed int64
	if stats.LiteralData > 0 {
		changed = 1
	}
	done := Report{
		Type:             ReportDone,
		Attempt:          attempt,
		BytesTotal:       size,
		Files:            1,
		FilesTotal:       1,
		BytesSent:        stats.BytesSent,
		FilesTransferred: changed,
		Attempts:         attempt,
		ElapsedSeconds:   time.Since(s.start).Round(time.Millisecond).Seconds(),
		Time:             time.Now().UTC(),
	}
	if s.o.Verify {
		// No pass of its own: the copy compared the whole device already. rsync's receiver
		// sums every byte of the result as it goes (rsync 3.5.0, receiver.c receive_data:
		// the literal data it writes, and each matched block as it reads it from the
		// target, also the blocks it skips writing because they match in place) and checks
		// that sum against the sender's sum of the whole source; a mismatch makes rsync
		// redo the file, and fail (code 23) if it differs again. With --ignore-times this
		// happens on every pass. A second read would come from the same page cache.
		done.Verified = &Verification{Files: 1, Bytes: size}
	}
	flushStart := time.Now()
	if err := s.upload(ctx, doneModule, completeFile, done.Marshal()); err != nil {
		return Report{}, err
	}
	log.WithFields(logrus.Fields{"bytesSent": stats.BytesSent, "literal": stats.LiteralData, "matched": stats.MatchedData,
		"seconds": time.Since(flushStart).Seconds()}).Info("done; target device flushed")
	return done, nil
}
