package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A tool copies src into the directory dst (empty, or holding an earlier copy for a re-stage).
type tool struct {
	name  string
	chart string // its bar in the chart (chart.go), or "" for none
	once  bool   // measured once, on disk only (restic: slow)
	run   func(ctx context.Context, src, dst string) error
}

func checkTools() error {
	for _, p := range []string{"tar", "rsync", "stunnel4", "restic", "sync", "taskset", "find"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("%s is not installed (`make deps` installs it): %w", p, err)
		}
	}
	return nil
}

type cpusKey struct{}

// pinned returns a context whose commands run under `taskset -c cpus`: every process a tool
// starts (ferry's serve and send, the rsync daemon, stunnel, tar, restic), and their own
// children, which inherit the affinity (ferry's rsync and stunnel). The kernel's work for them
// (TCP, the loop device, ext4's writeback) is not pinned.
func pinned(ctx context.Context, cpus string) context.Context {
	return context.WithValue(ctx, cpusKey{}, cpus)
}

// command starts a child that dies with the bench, on the CPUs of a pinned context.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if cpus, _ := ctx.Value(cpusKey{}).(string); cpus != "" {
		// taskset execs the command: the pid, and so Kill and Pdeathsig, stay the command's.
		name, args = "taskset", append([]string{"-c", cpus, name}, args...)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func runQuiet(ctx context.Context, env []string, dir, name string, args ...string) error {
	cmd := command(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(out))
	}
	return nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// tarPipe: `tar -cf - .` writing straight into a loopback TCP connection that `tar -xf -` reads
// (each tar holds its end of the socket; nothing in between).
func tarPipe(ctx context.Context, src, dst string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	out, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return err
	}
	in := <-accepted
	if in == nil {
		return fmt.Errorf("accept failed")
	}
	inFile, err := in.(*net.TCPConn).File()
	in.Close()
	if err != nil {
		return err
	}
	outFile, err := out.(*net.TCPConn).File()
	out.Close()
	if err != nil {
		return err
	}
	x := command(ctx, "tar", "-C", dst, "-xf", "-")
	x.Stdin = inFile
	c := command(ctx, "tar", "-C", src, "-cf", "-", ".")
	c.Stdout = outFile
	var xerr, cerr bytes.Buffer
	x.Stderr, c.Stderr = &xerr, &cerr
	if err := x.Start(); err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	inFile.Close()
	outFile.Close()
	if err := c.Wait(); err != nil {
		return fmt.Errorf("tar -c: %w: %s", err, cerr.String())
	}
	if err := x.Wait(); err != nil {
		return fmt.Errorf("tar -x: %w: %s", err, xerr.String())
	}
	return nil
}

// rsyncDaemon starts `rsync --daemon` on loopback serving dst as module "m" (as root, keeping
// owners). It returns the port.
func rsyncDaemon(ctx context.Context, dir, dst string) (int, func(), error) {
	port, err := freePort()
	if err != nil {
		return 0, nil, err
	}
	conf := filepath.Join(dir, "rsyncd.conf")
	content := fmt.Sprintf("use chroot = no\nmunge symlinks = no\nnumeric ids = yes\nuid = 0\ngid = 0\nreverse lookup = no\n[m]\npath = %s\nread only = no\n", dst)
	if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
		return 0, nil, err
	}
	d := command(ctx, "rsync", "--daemon", "--no-detach", "--address=127.0.0.1", "--port="+strconv.Itoa(port), "--config="+conf, "--log-file=/dev/null")
	if err := d.Start(); err != nil {
		return 0, nil, err
	}
	stop := func() { _ = d.Process.Kill(); _ = d.Wait() }
	if err := waitListening(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		stop()
		return 0, nil, err
	}
	return port, stop, nil
}

// plainRsync: `rsync -a` to an rsync daemon over loopback TCP, no encryption.
func plainRsync(work string) func(ctx context.Context, src, dst string) error {
	return func(ctx context.Context, src, dst string) error {
		port, stop, err := rsyncDaemon(ctx, work, dst)
		if err != nil {
			return err
		}
		defer stop()
		return runQuiet(ctx, nil, "", "rsync", "-a", src+"/", fmt.Sprintf("rsync://127.0.0.1:%d/m/", port))
	}
}

// stunnelRsync: one `rsync -aHS --numeric-ids` through a stunnel pair to an rsync daemon, the
// topology of the existing migration tools (client stunnel listening locally, server stunnel
// forwarding to the daemon's loopback port), with the same certificates ferry uses.
func stunnelRsync(work, certs string) func(ctx context.Context, src, dst string) error {
	return func(ctx context.Context, src, dst string) error {
		port, stop, err := rsyncDaemon(ctx, work, dst)
		if err != nil {
			return err
		}
		defer stop()
		serverPort, err := freePort()
		if err != nil {
			return err
		}
		clientPort, err := freePort()
		if err != nil {
			return err
		}
		tlsConf := func(side, peer string) string {
			return fmt.Sprintf("cert = %[1]s/%[2]s/tls.crt\nkey = %[1]s/%[2]s/tls.key\nCAfile = %[1]s/%[2]s/ca.crt\nverifyChain = yes\ncheckHost = %[3]s\n", certs, side, peer)
		}
		confs := map[string]string{
			"stunnel-server.conf": fmt.Sprintf("foreground = yes\npid =\nsyslog = no\ndebug = err\n[r]\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n%s",
				serverPort, port, tlsConf("server", "ferry-transfer-client")),
			"stunnel-client.conf": fmt.Sprintf("foreground = yes\npid =\nsyslog = no\ndebug = err\n[r]\nclient = yes\naccept = 127.0.0.1:%d\nconnect = 127.0.0.1:%d\n%s",
				clientPort, serverPort, tlsConf("client", "ferry-transfer-server")),
		}
		for name, content := range confs {
			conf := filepath.Join(work, name)
			if err := os.WriteFile(conf, []byte(content), 0o600); err != nil {
				return err
			}
			s := command(ctx, "stunnel4", conf)
			if err := s.Start(); err != nil {
				return err
			}
			defer func() { _ = s.Process.Kill(); _ = s.Wait() }()
		}
		for _, p := range []int{serverPort, clientPort} {
			if err := waitListening(fmt.Sprintf("127.0.0.1:%d", p)); err != nil {
				return err
			}
		}
		return runQuiet(ctx, nil, "", "rsync", "-aHS", "--numeric-ids", src+"/", fmt.Sprintf("rsync://127.0.0.1:%d/m/", clientPort))
	}
}

// ferry runs `ferry-datamover serve` into dst and `ferry-datamover send` from src with the
// given number of streams, as the transfer pods do.
func ferry(bin, certs string, streams int) func(ctx context.Context, src, dst string) error {
	return func(ctx context.Context, src, dst string) error {
		addr := fmt.Sprintf("127.0.0.1:%d", mustPort())
		serve := command(ctx, bin, "serve", "--dir", dst, "--listen", addr, "--certs", certs+"/server")
		var serveLog bytes.Buffer
		serve.Stderr = &serveLog
		if err := serve.Start(); err != nil {
			return err
		}
		defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
		if err := waitListening(addr); err != nil {
			return fmt.Errorf("%w: %s", err, tail(serveLog.Bytes()))
		}
		send := command(ctx, bin, "send", "--dir", src, "--to", addr, "--certs", certs+"/client", "--progress=none",
			"--streams", strconv.Itoa(streams))
		var sendLog bytes.Buffer
		send.Stderr = &sendLog
		if err := send.Run(); err != nil {
			return fmt.Errorf("ferry send: %w: %s", err, tail(sendLog.Bytes()))
		}
		if err := serve.Wait(); err != nil {
			return fmt.Errorf("ferry serve: %w: %s", err, tail(serveLog.Bytes()))
		}
		return nil
	}
}

// restic: `restic backup` of src into a fresh local repository, then `restic restore` into dst.
func restic(work string) func(ctx context.Context, src, dst string) error {
	return func(ctx context.Context, src, dst string) error {
		repo := filepath.Join(work, "restic-repo")
		env := []string{"RESTIC_REPOSITORY=" + repo, "RESTIC_PASSWORD=bench-only", "RESTIC_CACHE_DIR=" + filepath.Join(work, "restic-cache")}
		if err := runQuiet(ctx, env, "", "restic", "init", "--quiet"); err != nil {
			return err
		}
		defer os.RemoveAll(repo)
		if err := runQuiet(ctx, env, src, "restic", "backup", "--quiet", "."); err != nil {
			return err
		}
		return runQuiet(ctx, env, "", "restic", "restore", "latest", "--quiet", "--target", dst)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func mustPort() int {
	p, err := freePort()
	if err != nil {
		panic(err)
	}
	return p
}

func waitListening(addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s after 20s", addr)
}
