// Package imagesbench measures ferry's registry-to-registry image copy (imagecopy/engine) against
// `skopeo copy` (Debian's skopeo) for the same image between the same two real registries
// (Debian's docker-registry on loopback): cold (the target is empty) and warm (the target has
// every blob: nothing is sent). `make bench` runs it (hack/bench.sh); the result is printed as
// speed ratios, skopeo's time divided by ferry's (above 1: ferry is faster).
//
//	go test -tags containers_image_openpgp -run '^$' -bench . -benchtime 1x ./test/bench/images/
package imagesbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/imagecopy"
	"github.com/ferry-dev/ferry/imagecopy/engine"
	"github.com/ferry-dev/ferry/imagecopy/registrytest"
)

// The image: 8 layers of 16 MiB of random (incompressible) data plus its config.
const (
	layers    = 8
	layerSize = 16 << 20
	rounds    = 5
)

func BenchmarkImageCopy(b *testing.B) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		b.Fatalf("skopeo is not installed (Debian package skopeo; `make deps` installs it): %v", err)
	}
	src, err := registrytest.Start(registrytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	dst, err := registrytest.Start(registrytest.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer dst.Close()
	digest, err := src.PushImage("bench/app:v1", layers, layerSize)
	if err != nil {
		b.Fatal(err)
	}
	copier, err := engine.New(engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer copier.Close()

	from := imagecopy.Access{Host: src.Host, Insecure: true, CredentialsFrom: "none"}
	to := imagecopy.Access{Host: dst.Host, Insecure: true, CredentialsFrom: "none"}
	srcRef, dstRef := src.Host+"/bench/app@"+digest, dst.Host+"/bench/app:v1"
	var warmStats engine.Stats
	ferry := func(cold bool) (time.Duration, error) {
		start := time.Now()
		stats, err := copier.Copy(context.Background(), srcRef, from, dstRef, to)
		if !cold {
			warmStats = stats
		}
		return time.Since(start), err
	}
	skopeoCopy := func(bool) (time.Duration, error) {
		start := time.Now()
		cmd := exec.Command(skopeo, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
			"docker://"+srcRef, "docker://"+dstRef)
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("skopeo copy: %v: %s", err, out)
		}
		return time.Since(start), nil
	}

	// Rounds alternate the tools so drift on a shared machine hits both alike.
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for _, tool := range []struct {
			name string
			copy func(cold bool) (time.Duration, error)
		}{{"ferry", ferry}, {"skopeo", skopeoCopy}} {
			if err := dst.Reset(registrytest.Options{}); err != nil {
				b.Fatal(err)
			}
			for _, cold := range []bool{true, false} {
				d, err := tool.copy(cold)
				if err != nil {
					b.Fatal(err)
				}
				times[key(tool.name, cold)] = append(times[key(tool.name, cold)], d)
			}
		}
	}
	b.StopTimer()
	if got, err := dst.Digest("bench/app:v1"); err != nil || got != digest {
		b.Fatalf("the copied image does not resolve to %s: %s %v", digest, got, err)
	}
	if warmStats.BlobsSent != 0 {
		b.Fatalf("a warm copy sent %d blobs; it must send none", warmStats.BlobsSent)
	}

	size := float64(layers*layerSize) / (1 << 20)
	fmt.Fprintf(os.Stdout, "\nimage copy, %d layers x %d MiB (%.0f MiB), median of %d rounds, registries on loopback\n", layers, layerSize>>20, size, rounds)
	fmt.Fprintf(os.Stdout, "%-6s %12s %12s %14s\n", "", "ferry", "skopeo", "speed ratio")
	for _, cold := range []bool{true, false} {
		f, s := median(times[key("ferry", cold)]), median(times[key("skopeo", cold)])
		ratio := s.Seconds() / f.Seconds()
		label := map[bool]string{true: "cold", false: "warm"}[cold]
		fmt.Fprintf(os.Stdout, "%-6s %12s %12s %14.2f\n", label, f.Round(time.Millisecond), s.Round(time.Millisecond), ratio)
		b.ReportMetric(ratio, label+"-speed-vs-skopeo")
		b.ReportMetric(f.Seconds(), label+"-ferry-s")
	}
	fmt.Fprintf(os.Stdout, "warm ferry copy: %d blobs sent, %d skipped (speed ratio = skopeo time / ferry time; skopeo's includes its process start)\n",
		warmStats.BlobsSent, warmStats.BlobsSkipped)
}

func key(tool string, cold bool) string { return fmt.Sprintf("%s/%v", tool, cold) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
