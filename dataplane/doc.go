// Package dataplane moves a volume's files to another cluster: GenerateCerts makes one
// transfer's certificates, Serve receives on the target, Send copies from the source. It knows
// nothing of Kubernetes; the sidecar (package sidecar/volume) runs it in transfer pods.
//
// Serve runs on the target next to the volume. stunnel accepts TLS (1.2 or newer, AES-GCM) and
// requires a client certificate signed by the transfer's own CA; each accepted connection gets
// its own rsync in daemon mode on its stdin/stdout, so no rsync port is listening anywhere. Send
// runs on the source: it walks the volume, splits it into units owned by exactly one of several
// parallel rsync streams (streamplan.go), and runs each rsync through its own stunnel client in
// inetd mode. A pass over the volume root then deletes what the source no longer has there and
// sets the root's attributes. Send's completion notice goes to a module that flushes the volume
// to disk before it accepts it; once it arrived, Serve exits 0. Send's progress is a stream of
// Reports (one JSON object per line) that the sidecar reads from the client pod's log with
// ParseReport.
//
// A volume with volumeMode Block is copied the same way with `--device` on both sides
// (block.go): one rsync of the source device into the target device, in place, by delta.
//
// The command lines of `ferry-datamover send` and `serve` are defined once, in flags.go.
package dataplane
