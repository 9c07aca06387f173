package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The block part: a 1 GiB device (a loop device over a file on the machine's disk, direct I/O)
// of random data copied by ferry (send/serve --device) into a fresh device of the same size,
// then re-staged after 1 % of its 64 KiB blocks changed, against dd through the same stunnel
// mutual-TLS channel (the transfer's certificates), the target flushed (conv=fsync). Every
// copy starts with both devices' caches dropped, so each tool reads from the disk.

const blockBenchChunk = 64 << 10

// blockDev is a loop device over an image file under the work directory.
type blockDev struct {
	image, dev string
}

func attachBlock(ctx context.Context, image string, size int64) (*blockDev, error) {
	f, err := os.OpenFile(image, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "losetup", "--direct-io=on", "-f", "--show", image).Output()
	if err != nil {
		return nil, fmt.Errorf("losetup %s: %w", image, err)
	}
	return &blockDev{image: image, dev: strings.TrimSpace(string(out))}, nil
}

func (d *blockDev) release(ctx context.Context) {
	if d == nil || d.dev == "" {
		return
	}
	if err := runQuiet(ctx, nil, "", "losetup", "-d", d.dev); err != nil {
		logf("cleanup: %v", err)
	}
	_ = os.Remove(d.image)
	d.dev = ""
}

// dropCache writes back and drops the device's page cache.
func (d *blockDev) dropCache(ctx context.Context) error {
	return runQuiet(ctx, nil, "", "blockdev", "--flushbufs", d.dev)
}

// fillRandom writes size random bytes over the device, or, with chunks > 0, rewrites that many
// random blocks of blockBenchChunk bytes (1 % of them for the re-stage).
func (d *blockDev) fillRandom(size int64, chunks int, seed uint64) error {
	f, err := os.OpenFile(d.dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 0xbe})
	if chunks == 0 {
		w := bufio.NewWriterSize(f, 4<<20)
		if _, err := io.CopyN(w, rng, size); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return f.Sync()
	}
	pick := rand.New(rand.NewPCG(seed, 17))
	buf := make([]byte, blockBenchChunk)
	seen := map[int64]bool{}
	for len(seen) < chunks {
		c := pick.Int64N(size / blockBenchChunk)
		if seen[c] {
			continue
		}
		seen[c] = true
		_, _ = rng.Read(buf)
		if _, err := f.WriteAt(buf, c*blockBenchChunk); err != nil {
			return err
		}
	}
	return f.Sync()
}

// ferryDevice runs serve --device into dst and send --device from src; it returns the bytes
// send put on the wire (its done report).
func ferryDevice(ctx context.Context, bin, certs, src, dst string) (int64, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", mustPort())
	serve := command(ctx, bin, "serve", "--device", dst, "--listen", addr, "--certs", certs+"/server")
	var serveLog bytes.Buffer
	serve.Stderr = &serveLog
	if err := serve.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
	if err := waitListening(addr); err != nil {
		return 0, fmt.Errorf("%w: %s", err, tail(serveLog.Bytes()))
	}
	send := command(ctx, bin, "send", "--device", src, "--to", addr, "--certs", certs+"/client", "--progress=json")
	var sendLog, sendOut bytes.Buffer
	send.Stderr, send.Stdout = &sendLog, &sendOut
	if err := send.Run(); err != nil {
		return 0, fmt.Errorf("ferry send: %w: %s", err, tail(sendLog.Bytes()))
	}
	if err := serve.Wait(); err != nil {
		return 0, fmt.Errorf("ferry serve: %w: %s", err, tail(serveLog.Bytes()))
	}
	var done struct {
		Type      string `json:"type"`
		BytesSent int64  `json:"bytesSent"`
	}
	for _, line := range strings.Split(strings.TrimSpace(sendOut.String()), "\n") {
		if err := json.Unmarshal([]byte(line), &done); err == nil && done.Type == "done" {
			return done.BytesSent, nil
		}
	}
	return 0, fmt.Errorf("ferry send printed no done report: %s", tail(sendOut.Bytes()))
}

// ddStunnel copies src into dst with `dd bs=1M` on both ends of a stunnel pair with the
// transfer's certificates: the client stunnel in inetd mode on dd's output, the server stunnel
// starting a dd that writes the device and fsyncs it. It returns once the server's dd exited.
func ddStunnel(ctx context.Context, work, certs, src, dst string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	doneFile := filepath.Join(work, "dd-done")
	_ = os.Remove(doneFile)
	recv := filepath.Join(work, "dd-recv.sh")
	script := "#!/bin/sh\ndd of=\"$1\" bs=1M iflag=fullblock conv=fsync 2>/dev/null && touch \"$2\"\n"
	if err := os.WriteFile(recv, []byte(script), 0o755); err != nil {
		return err
	}
	tlsConf := func(side, peer string) string {
		return fmt.Sprintf("cert = %[1]s/%[2]s/tls.crt\nkey = %[1]s/%[2]s/tls.key\nCAfile = %[1]s/%[2]s/ca.crt\nverifyChain = yes\ncheckHost = %[3]s\n", certs, side, peer)
	}
	serverConf, clientConf := filepath.Join(work, "dd-server.conf"), filepath.Join(work, "dd-client.conf")
	confs := map[string]string{
		serverConf: fmt.Sprintf("foreground = yes\npid =\nsyslog = no\ndebug = err\n[d]\naccept = 127.0.0.1:%d\nexec = %s\nexecArgs = dd-recv %s %s\n%s",
			port, recv, dst, doneFile, tlsConf("server", "ferry-transfer-client")),
		clientConf: fmt.Sprintf("foreground = yes\npid =\nsyslog = no\ndebug = err\nclient = yes\nconnect = 127.0.0.1:%d\n%s",
			port, tlsConf("client", "ferry-transfer-server")),
	}
	for name, content := range confs {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			return err
		}
	}
	server := command(ctx, "stunnel4", serverConf)
	if err := server.Start(); err != nil {
		return err
	}
	defer func() { _ = server.Process.Kill(); _ = server.Wait() }()
	if err := waitListening(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		return err
	}
	pipeline := fmt.Sprintf("dd if=%s bs=1M 2>/dev/null | stunnel4 %s", src, clientConf)
	if err := runQuiet(ctx, nil, "", "sh", "-c", pipeline); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(doneFile); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the receiving dd did not finish")
}

// sameDevices compares the first n bytes of two devices.
func sameDevices(a, b string, n int64) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, 4<<20), make([]byte, 4<<20)
	for off := int64(0); off < n; off += int64(len(ba)) {
		k := min(int64(len(ba)), n-off)
		if _, err := io.ReadFull(fa, ba[:k]); err != nil {
			return err
		}
		if _, err := io.ReadFull(fb, bb[:k]); err != nil {
			return err
		}
		if !bytes.Equal(ba[:k], bb[:k]) {
			return fmt.Errorf("%s and %s differ in the MiB at %d", a, b, off)
		}
	}
	return nil
}

// blockCopies measures the block part and prints its table.
func (b *bench) blockCopies(ctx context.Context) error {
	devSize := b.sets.bigFile()
	src, err := attachBlock(ctx, filepath.Join(b.cfg.work, "block-src.img"), devSize)
	if err != nil {
		return err
	}
	defer src.release(ctx)
	logf("block: filling a %d MiB source device with random data", devSize>>20)
	if err := src.fillRandom(devSize, 0, 1); err != nil {
		return err
	}
	chunks := int(max(1, devSize/blockBenchChunk/100))
	rounds, note := b.rounds(0)
	var first, restage, dd []time.Duration
	var firstSent, restageSent []int64
	for round := 0; round < rounds; round++ {
		// Each measurement into a fresh, sparse target: a newly provisioned volume.
		timed := func(name string, copy func(dst string) error, fresh bool, dst **blockDev) (time.Duration, error) {
			if fresh {
				(*dst).release(ctx)
				d, err := attachBlock(ctx, filepath.Join(b.cfg.work, "block-dst.img"), devSize)
				if err != nil {
					return 0, err
				}
				*dst = d
			}
			for _, d := range []*blockDev{src, *dst} {
				if err := d.dropCache(ctx); err != nil {
					return 0, err
				}
			}
			start := time.Now()
			if err := copy((*dst).dev); err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			took := time.Since(start)
			return took, sameDevices(src.dev, (*dst).dev, devSize)
		}
		var dst *blockDev
		var sent int64
		ferryCopy := func(d string) (err error) {
			sent, err = ferryDevice(ctx, b.ferry, b.certs, src.dev, d)
			return err
		}
		f, err := timed("ferry first copy", ferryCopy, true, &dst)
		if err != nil {
			dst.release(ctx)
			return err
		}
		first, firstSent = append(first, f), append(firstSent, sent)
		if err := src.fillRandom(devSize, chunks, uint64(round)+2); err != nil {
			dst.release(ctx)
			return err
		}
		r, err := timed("ferry re-stage", ferryCopy, false, &dst)
		if err != nil {
			dst.release(ctx)
			return err
		}
		restage, restageSent = append(restage, r), append(restageSent, sent)
		d, err := timed("dd through stunnel", func(d string) error { return ddStunnel(ctx, b.cfg.work, b.certs, src.dev, d) }, true, &dst)
		dst.release(ctx)
		if err != nil {
			return err
		}
		dd = append(dd, d)
		logf("  block round %d: ferry first copy %s (%d bytes sent), re-stage %s (%d bytes sent), dd through stunnel %s", round+1,
			f.Round(time.Millisecond), firstSent[round], r.Round(time.Millisecond), restageSent[round], d.Round(time.Millisecond))
	}
	rate := func(d time.Duration) string {
		return fmt.Sprintf("%.0f MiB/s", float64(devSize)/(1<<20)/d.Seconds())
	}
	spread := func(ds []time.Duration) string {
		return fmt.Sprintf("%.1f–%.1f s", slices.Min(ds).Seconds(), slices.Max(ds).Seconds())
	}
	b.publish("block", fmt.Sprintf("**%s block device of random data**, on disk (loop devices, direct I/O; %s):\n\n%s\nRounds: first copy %s, re-stage %s, dd %s.\n",
		human(devSize), note, mdTable([]string{"copy", "time", "device MiB/s", "bytes sent"}, [][]string{
			{"ferry send/serve --device, first copy", seconds(median(first)), rate(median(first)), fmt.Sprint(medianInt(firstSent))},
			{fmt.Sprintf("ferry re-stage, 1 %% of 64 KiB blocks changed (%d)", chunks), seconds(median(restage)), rate(median(restage)), fmt.Sprint(medianInt(restageSent))},
			{"dd bs=1M | stunnel (mutual TLS) | dd conv=fsync", seconds(median(dd)), rate(median(dd)), fmt.Sprint(devSize)},
		}), spread(first), spread(restage), spread(dd)))
	return nil
}

func medianInt(xs []int64) int64 {
	s := append([]int64(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
