package images

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Options say where a build finds its inputs and keeps its cache.
type Options struct {
	// CacheDir keeps Debian root filesystems, built helper binaries and finished images (OCI
	// layouts), each under a key of its inputs.
	CacheDir string
	// FerryBinDir holds ferry's binaries (`make build`).
	FerryBinDir string
	// RepoRoot is the ferry checkout (for the Go packages of test images).
	RepoRoot string
	// Logf receives progress lines (nil: silent).
	Logf func(format string, args ...any)
}

// Built is a finished image.
type Built struct {
	Definition
	Image v1.Image
	// Key is a digest of everything the image is made of; it is also the tag it is pushed with.
	Key string
	// Cached reports that the image came from the cache unchanged.
	Cached bool
}

// Ref is the image's reference in a registry (host:port).
func (b Built) Ref(registry string) string { return registry + "/" + b.Name + ":" + b.Key }

// mtime is the modification time of every file the builder writes: images with equal inputs
// are equal to the byte.
var mtime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// bookworm is the suite of the Debian base (debian:bookworm-slim in the Dockerfiles).
const bookworm = "bookworm"

// dpkgExcludes make the root filesystem slim the way the Debian "slim" images are.
var dpkgExcludes = []string{
	"path-exclude=/usr/share/man/*",
	"path-exclude=/usr/share/doc/*",
	"path-include=/usr/share/doc/*/copyright",
	"path-exclude=/usr/share/locale/*",
	"path-exclude=/usr/share/info/*",
}

// Build builds the definitions (from the cache when their inputs are unchanged).
func Build(ctx context.Context, opts Options, defs ...Definition) ([]Built, error) {
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return nil, err
	}
	// Stacks of parallel test binaries build into one cache: one at a time, the later ones
	// then find the images cached.
	lock, err := os.OpenFile(filepath.Join(opts.CacheDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking the image cache: %w", err)
	}
	var out []Built
	for _, d := range defs {
		t := time.Now()
		b, err := build(ctx, opts, d)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", d.Name, err)
		}
		how := "built"
		if b.Cached {
			how = "cached"
		}
		opts.Logf("images: %s:%s %s in %s", d.Name, b.Key, how, time.Since(t).Round(10*time.Millisecond))
		out = append(out, b)
	}
	return out, nil
}

func build(ctx context.Context, opts Options, d Definition) (Built, error) {
	files := make([]string, len(d.Files))
	h := sha256.New()
	def, err := json.Marshal(d)
	if err != nil {
		return Built{}, err
	}
	h.Write(def)
	for i, f := range d.Files {
		p, err := opts.source(ctx, f.From)
		if err != nil {
			return Built{}, fmt.Errorf("%s: %w", f.Dest, err)
		}
		files[i] = p
		sum, err := fileSHA256(p)
		if err != nil {
			return Built{}, err
		}
		fmt.Fprintf(h, "\x00%s %s", f.Dest, sum)
	}
	var debKey string
	if d.Debian != nil {
		if debKey, err = debianKey(d.Debian); err != nil {
			return Built{}, err
		}
		fmt.Fprintf(h, "\x00debian %s", debKey)
	}
	if d.Busybox {
		sum, err := fileSHA256(busyboxPath)
		if err != nil {
			return Built{}, fmt.Errorf("busybox (Debian's busybox-static): %w", err)
		}
		fmt.Fprintf(h, "\x00busybox %s", sum)
	}
	key := hex.EncodeToString(h.Sum(nil))[:keyLen]
	b := Built{Definition: d, Key: key}
	dir := filepath.Join(opts.CacheDir, "oci", d.Name+"-"+key)
	if img, err := readLayout(dir); err == nil {
		b.Image, b.Cached = img, true
		// Marks it as used, for pruneStale.
		now := time.Now()
		_ = os.Chtimes(dir, now, now)
		return b, nil
	}
	// Each change of ferry's binaries makes a new image: older ones of this name go once unused
	// for a while (another checkout's run may still push one).
	if err := pruneStale(filepath.Dir(dir), d.Name, staleAfter); err != nil {
		opts.Logf("images: pruning old %s images: %v", d.Name, err)
	}

	work, err := os.MkdirTemp(opts.CacheDir, ".build-"+d.Name+"-")
	if err != nil {
		return Built{}, err
	}
	defer os.RemoveAll(work)
	var layers []v1.Layer
	if d.Debian != nil {
		base, err := opts.debianLayer(ctx, d.Debian, debKey)
		if err != nil {
			return Built{}, err
		}
		layers = append(layers, base)
	}
	top := filepath.Join(work, "top.tar.gz")
	if err := writeTopLayer(top, d, files); err != nil {
		return Built{}, err
	}
	l, err := tarball.LayerFromFile(top, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return Built{}, err
	}
	layers = append(layers, l)

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		return Built{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return Built{}, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = v1.Time{Time: mtime}
	cf.Config.User = d.User
	cf.Config.Entrypoint = d.Entrypoint
	cf.Config.Cmd = d.Cmd
	cf.Config.Env = d.Env
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return Built{}, err
	}
	tmpLayout := filepath.Join(work, "oci")
	p, err := layout.Write(tmpLayout, empty.Index)
	if err != nil {
		return Built{}, err
	}
	if err := p.AppendImage(img); err != nil {
		return Built{}, err
	}
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return Built{}, err
	}
	if err := os.Rename(tmpLayout, dir); err != nil {
		return Built{}, err
	}
	// Read back from the cache, so a cold and a warm build hand out the same thing.
	if b.Image, err = readLayout(dir); err != nil {
		return Built{}, err
	}
	return b, nil
}

// staleAfter is how long a cached image may go unused before a build of a newer one of its
// name removes it.
const staleAfter = 24 * time.Hour

// pruneStale removes the images of name in ociDir (name-<key>) not used for longer than age.
func pruneStale(ociDir, name string, age time.Duration) error {
	entries, err := os.ReadDir(ociDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		key, ok := strings.CutPrefix(e.Name(), name+"-")
		if !ok || !e.IsDir() || !isKey(key) {
			continue
		}
		info, err := e.Info()
		if err != nil || time.Since(info.ModTime()) < age {
			continue
		}
		errs = append(errs, os.RemoveAll(filepath.Join(ociDir, e.Name())))
	}
	return errors.Join(errs...)
}

// keyLen is how many hex digits of its inputs' digest name an image (its tag).
const keyLen = 16

// isKey is whether s is an image key as build makes them.
func isKey(s string) bool {
	if len(s) != keyLen {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func readLayout(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("%s: want one image, found %d", dir, len(m.Manifests))
	}
	return idx.Image(m.Manifests[0].Digest)
}

// Push pushes the image to a plain-HTTP registry (host:port) under Ref(registry). Blobs the
// registry has are not sent again.
func Push(ctx context.Context, b Built, registry string) (string, error) {
	ref := b.Ref(registry)
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, b.Image, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	return ref, nil
}

// PushAs pushes the image under another reference (host:port/repo:tag of a plain-HTTP registry),
// as a user pushes an application image, and returns its manifest digest.
func PushAs(ctx context.Context, b Built, ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(r, b.Image, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := b.Image.Digest()
	if err != nil {
		return "", err
	}
	return d.String(), nil
}

const busyboxPath = "/bin/busybox"

// source resolves a file source to a path on this machine.
func (o Options) source(ctx context.Context, s Source) (string, error) {
	switch {
	case s.FerryBinary != "":
		p := filepath.Join(o.FerryBinDir, s.FerryBinary)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("ferry binary %w (built by `make build`)", err)
		}
		return p, nil
	case s.Busybox:
		if _, err := os.Stat(busyboxPath); err != nil {
			return "", fmt.Errorf("%w (Debian's busybox-static, `make deps`)", err)
		}
		return busyboxPath, nil
	case s.GoPackage != "":
		out := filepath.Join(o.CacheDir, "bin", path.Base(s.GoPackage))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return "", err
		}
		// go build is itself cached: when nothing changed this is a link step at most.
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, s.GoPackage)
		cmd.Dir = o.RepoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if data, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v: %s", s.GoPackage, err, strings.TrimSpace(string(data)))
		}
		return out, nil
	}
	return "", errors.New("file source names nothing")
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeTopLayer writes the layer of a definition's files, busybox and directories: parent
// directories 0755, files 0755, owned by root, one fixed mtime.
func writeTopLayer(out string, d Definition, files []string) error {
	lw, err := newLayerWriter(out)
	if err != nil {
		return err
	}
	if d.Busybox {
		if err := lw.file("/bin/busybox", busyboxPath); err != nil {
			return err
		}
		list, err := exec.Command(busyboxPath, "--list-full").Output()
		if err != nil {
			return fmt.Errorf("busybox --list-full: %w", err)
		}
		for _, applet := range strings.Fields(string(list)) {
			if p := "/" + applet; p != "/bin/busybox" {
				if err := lw.symlink(p, "/bin/busybox"); err != nil {
					return err
				}
			}
		}
	}
	for _, dir := range d.Dirs {
		mode := int64(0o755)
		if dir.Sticky {
			mode = 0o1777
		}
		if err := lw.dir(dir.Path, mode); err != nil {
			return err
		}
	}
	for i, f := range d.Files {
		if err := lw.file(f.Dest, files[i]); err != nil {
			return err
		}
	}
	return lw.close()
}

// layerWriter writes a gzipped layer tar, creating each parent directory once.
type layerWriter struct {
	f    *os.File
	gz   *gzip.Writer
	tw   *tar.Writer
	dirs map[string]bool
	err  error
}

func newLayerWriter(out string) (*layerWriter, error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	gz, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	return &layerWriter{f: f, gz: gz, tw: tar.NewWriter(gz), dirs: map[string]bool{}}, nil
}

func (w *layerWriter) parents(p string) error {
	dir := path.Dir(p)
	if dir == "/" || w.dirs[dir] {
		return nil
	}
	if err := w.parents(dir); err != nil {
		return err
	}
	return w.dir(dir, 0o755)
}

func (w *layerWriter) dir(p string, mode int64) error {
	if w.dirs[p] {
		return nil
	}
	if err := w.parents(p); err != nil {
		return err
	}
	w.dirs[p] = true
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode, ModTime: mtime, Format: tar.FormatPAX})
}

func (w *layerWriter) symlink(p, target string) error {
	if err := w.parents(p); err != nil {
		return err
	}
	return w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: target, Mode: 0o777, ModTime: mtime, Format: tar.FormatPAX})
}

func (w *layerWriter) file(p, src string) error {
	if err := w.parents(p); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Size: st.Size(), Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.Copy(w.tw, in)
	return err
}

func (w *layerWriter) close() error {
	errs := []error{w.tw.Close(), w.gz.Close(), w.f.Close()}
	return errors.Join(errs...)
}

// aptSources is the machine's apt source list that the Debian root filesystems are built from
// (pasted into the chroot by mmdebstrap): no other mirror is reachable.
func aptSources() (string, error) {
	for _, p := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return p, nil
		}
	}
	return "", errors.New("no Debian apt sources on this machine (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)")
}

// debianKey keys a Debian root filesystem by what goes into it: suite, packages, the slimming
// options and the apt sources.
func debianKey(pkgs []string) (string, error) {
	src, err := aptSources()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	sorted := append([]string(nil), pkgs...)
	sort.Strings(sorted)
	h := sha256.New()
	fmt.Fprintf(h, "%s minbase %s %s\x00", bookworm, strings.Join(sorted, ","), strings.Join(dpkgExcludes, " "))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// debianLayer returns the Debian base layer, running mmdebstrap only when the cache has no layer
// for this key (the slow part of a cold build: minutes).
func (o Options) debianLayer(ctx context.Context, pkgs []string, key string) (v1.Layer, error) {
	dir := filepath.Join(o.CacheDir, "debian")
	layerPath := filepath.Join(dir, key+".tar.gz")
	if _, err := os.Stat(layerPath); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		src, err := aptSources()
		if err != nil {
			return nil, err
		}
		rootfs := filepath.Join(dir, ".rootfs-"+key+".tar")
		defer os.Remove(rootfs)
		args := []string{"--variant=minbase", "--include=" + strings.Join(pkgs, ","), "--quiet"}
		for _, x := range dpkgExcludes {
			args = append(args, "--dpkgopt="+x)
		}
		args = append(args, bookworm, rootfs, src)
		o.Logf("images: mmdebstrap %s (cached afterwards; minutes)", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
		if data, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("mmdebstrap: %v: %s", err, lastLines(string(data), 20))
		}
		tmp := layerPath + ".tmp"
		if err := rootfsToLayer(rootfs, tmp); err != nil {
			os.Remove(tmp)
			return nil, err
		}
		if err := os.Rename(tmp, layerPath); err != nil {
			return nil, err
		}
	}
	return tarball.LayerFromFile(layerPath, tarball.WithMediaType(types.OCILayer))
}

// rootfsToLayer turns mmdebstrap's tarball into a layer: names without "./", and without the
// device nodes mmdebstrap leaves in /dev (a container runtime mounts its own /dev).
func rootfsToLayer(rootfs, out string) error {
	in, err := os.Open(rootfs)
	if err != nil {
		return err
	}
	defer in.Close()
	lw, err := newLayerWriter(out)
	if err != nil {
		return err
	}
	tr := tar.NewReader(in)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			lw.close()
			return fmt.Errorf("reading %s: %w", rootfs, err)
		}
		n := strings.TrimPrefix(hdr.Name, "./")
		if n == "" || (strings.HasPrefix(n, "dev/") && n != "dev/") {
			continue
		}
		hdr.Name = n
		if hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = strings.TrimPrefix(hdr.Linkname, "./")
		}
		if err := lw.tw.WriteHeader(hdr); err != nil {
			lw.close()
			return err
		}
		if _, err := io.Copy(lw.tw, tr); err != nil {
			lw.close()
			return err
		}
	}
	return lw.close()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
