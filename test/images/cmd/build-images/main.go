// Command build-images builds the local stack's images (ferry-datamover, ferry-plugins, the test
// app and pause; see package images) into the cache, and pushes them to registries if asked:
//
//	build-images [--push HOST:PORT]...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/test/images"
	"github.com/ferry-dev/ferry/test/stack"
)

type registries []string

func (r *registries) String() string     { return strings.Join(*r, ",") }
func (r *registries) Set(v string) error { *r = append(*r, v); return nil }

func main() {
	var push registries
	flag.Var(&push, "push", "push every image to this plain-HTTP registry (repeatable)")
	flag.Parse()
	if err := run(push); err != nil {
		fmt.Fprintln(os.Stderr, "build-images:", err)
		os.Exit(1)
	}
}

func run(push []string) error {
	opts, err := stack.ImageOptions()
	if err != nil {
		return err
	}
	opts.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
	ctx := context.Background()
	built, err := images.Build(ctx, opts, images.All...)
	if err != nil {
		return err
	}
	for _, b := range built {
		fmt.Printf("%s:%s\t%s\n", b.Name, b.Key, filepath.Join(opts.CacheDir, "oci", b.Name+"-"+b.Key))
		for _, r := range push {
			ref, err := images.Push(ctx, b, r)
			if err != nil {
				return err
			}
			fmt.Printf("  pushed %s\n", ref)
		}
	}
	return nil
}
