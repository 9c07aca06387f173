// Package datamover is ferry's data mover: the data plane that copies a volume's files to the
// target cluster (GenerateCerts, Serve, Send) and the sidecar controller that runs it in
// transfer pods.
//
// The data plane: Serve runs on the target next to the volume. stunnel accepts TLS (1.2 or
// newer, AES-GCM) and requires a client certificate signed by the transfer's own CA; each
// accepted connection gets its own rsync in daemon mode on its stdin/stdout, so no rsync port is
// listening anywhere. Send runs on the source: it walks the volume, splits it into units owned
// by exactly one of several parallel rsync streams (plan.go), and runs each rsync through its
// own stunnel client in inetd mode. A pass over the volume root then deletes what the source no
// longer has there and sets the root's attributes. Send's completion report goes to a module
// that flushes the volume to disk before it accepts it; once it arrived, Serve exits 0. Send's
// progress is a stream of Events (one JSON object per line) that the controller reads from the
// client pod's log with ParseEvent.
package datamover
