// Package engine copies images from one registry to another with go.podman.io/image/v5 (its
// docker transport only): digests are preserved (no re-compression, a manifest list stays a list
// with every instance), the layers of an image go in parallel, blobs the target already has are
// skipped and counted, and transient registry errors are retried.
//
// It needs the build tag containers_image_openpgp (pure-Go signature code instead of gpgme), as
// the Makefile sets it. Only the sidecar's packages import it; the plugins never do.
package engine

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/internal/version"
)

// DefaultRetry is the backoff for transient registry errors: 5 attempts over about half a minute.
var DefaultRetry = wait.Backoff{Duration: 2 * time.Second, Factor: 2, Jitter: 0.1, Steps: 5, Cap: 30 * time.Second}

// Options shape a Copier. The zero value is usable.
type Options struct {
	// Parallel is how many blobs of one image are copied at once; 0 means 6.
	Parallel int
	// Retry is the backoff between attempts after a transient error; zero Steps means DefaultRetry.
	Retry wait.Backoff
	// CacheDir holds the blob-info cache (which blobs a registry is known to have, so a blob can be
	// mounted from another repository of the target instead of uploaded). "" makes a temporary
	// folder that Close removes. Never the host's shared cache: skopeo or podman on the same host
	// must not change what ferry does.
	CacheDir string
	// Log receives retries and per-image results (V(1)).
	Log logr.Logger
}

// Copier copies images. It is safe for concurrent use.
type Copier struct {
	parallel int
	retry    wait.Backoff
	cacheDir string
	tempDir  bool
	log      logr.Logger
}

// New returns a Copier.
func New(opts Options) (*Copier, error) {
	c := &Copier{parallel: opts.Parallel, retry: opts.Retry, cacheDir: opts.CacheDir, log: opts.Log}
	if c.parallel <= 0 {
		c.parallel = 6
	}
	if c.retry.Steps == 0 {
		c.retry = DefaultRetry
	}
	if c.cacheDir == "" {
		dir, err := os.MkdirTemp("", "ferry-blob-info-")
		if err != nil {
			return nil, fmt.Errorf("creating the blob-info cache folder: %w", err)
		}
		c.cacheDir, c.tempDir = dir, true
	}
	return c, nil
}

// Close removes the temporary cache folder.
func (c *Copier) Close() error {
	if c.tempDir {
		return os.RemoveAll(c.cacheDir)
	}
	return nil
}

// Stats is what one Copy did.
type Stats struct {
	// Digest is the digest of the manifest (or list) now at the destination.
	Digest string
	// BlobsSent are blobs uploaded; BlobsSkipped blobs the destination had before this copy.
	BlobsSent, BlobsSkipped int
	BytesSent               int64
	// Retries counts attempts repeated after transient errors.
	Retries int
}

// Copy copies the image src (host/repository@digest or :tag, on from.Host) to dst
// (host/repository:tag or @digest, on to.Host). A manifest list is copied with every instance;
// digests never change (a destination that would need a changed manifest is an error).
// Transient errors are retried with backoff; the error of the last attempt is returned, naming
// both images.
func (c *Copier) Copy(ctx context.Context, src string, from imagecopy.Access, dst string, to imagecopy.Access) (Stats, error) {
	srcRef, err := docker.ParseReference("//" + src)
	if err != nil {
		return Stats{}, fmt.Errorf("source %q is not an image reference: %w", src, err)
	}
	dstRef, err := docker.ParseReference("//" + dst)
	if err != nil {
		return Stats{}, fmt.Errorf("destination %q is not an image reference: %w", dst, err)
	}
	log := c.log.WithValues("source", src, "destination", dst)
	blobs := newBlobTally()
	var stats Stats
	var last error
	attempt := 0
	err = wait.ExponentialBackoffWithContext(ctx, c.retry, func(ctx context.Context) (bool, error) {
		attempt++
		if attempt > 1 {
			stats.Retries++
		}
		manifestBytes, err := c.copyOnce(ctx, srcRef, from, dstRef, to, blobs)
		if err == nil {
			d, derr := manifest.Digest(manifestBytes)
			if derr != nil {
				return false, derr
			}
			stats.Digest = d.String()
			return true, nil
		}
		last = err
		if ctx.Err() != nil || !transient(err) {
			return false, err
		}
		log.Info("transient registry error; retrying", "attempt", attempt, "error", err.Error())
		return false, nil
	})
	stats.BlobsSent, stats.BlobsSkipped, stats.BytesSent = blobs.result()
	if err != nil {
		if wait.Interrupted(err) && last != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (gave up after %d attempts)", last, attempt)
		}
		return stats, fmt.Errorf("copying %s to %s: %w%s", src, dst, err, hint(err, from, to))
	}
	log.V(1).Info("copied", "digest", stats.Digest, "blobsSent", stats.BlobsSent, "blobsSkipped", stats.BlobsSkipped, "bytesSent", stats.BytesSent)
	return stats, nil
}

// copyOnce is one attempt; blob events go to tally.
func (c *Copier) copyOnce(ctx context.Context, srcRef types.ImageReference, from imagecopy.Access, dstRef types.ImageReference, to imagecopy.Access, tally *blobTally) ([]byte, error) {
	// Ferry copies the user's own images between the user's own registries; whether an image
	// may run is the target cluster's policy to decide, not the copier's.
	policy, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return nil, err
	}
	defer func() { _ = policy.Destroy() }()

	events := make(chan types.ProgressProperties, 64)
	done := tally.consume(events)
	defer func() {
		close(events)
		<-done
	}()
	return copy.Image(ctx, policy, dstRef, srcRef, &copy.Options{
		SourceCtx:            c.systemContext(from),
		DestinationCtx:       c.systemContext(to),
		ImageListSelection:   copy.CopyAllImages,
		PreserveDigests:      true,
		MaxParallelDownloads: uint(c.parallel),
		Progress:             events,
		ProgressInterval:     time.Second,
	})
}

// systemContext is the containers/image configuration for one registry: ferry's credentials
// only (never the host's auth files), its TLS trust, and its own blob-info cache.
func (c *Copier) systemContext(a imagecopy.Access) *types.SystemContext {
	sys := &types.SystemContext{
		DockerAuthConfig:                  &types.DockerAuthConfig{Username: a.Username, Password: a.Password},
		BlobInfoCacheDir:                  c.cacheDir,
		DockerRegistryUserAgent:           "ferry/" + version.Version,
		DockerDisableDestSchema1MIMETypes: true,
	}
	if a.RootCAs != nil {
		sys.BaseTLSConfig = &tls.Config{RootCAs: a.RootCAs, MinVersion: tls.VersionTLS12}
	}
	if a.Insecure {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
	}
	return sys
}
