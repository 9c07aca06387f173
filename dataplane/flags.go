package dataplane

import (
	"fmt"
	"net"
	"strconv"

	"github.com/spf13/pflag"
)

// The command lines of `ferry-datamover send` and `serve` have one home: BindFlags defines the
// flags the CLI parses, and Args renders options as those same flags for the commands the sidecar
// gives transfer pods. A flag added to BindFlags is in both at once.

// NewSendOptions returns send's defaults.
func NewSendOptions() SendOptions {
	return SendOptions{Streams: DefaultStreams, MaxAttempts: DefaultMaxAttempts, Backoff: DefaultBackoff, Progress: ProgressHuman}
}

// BindFlags defines send's flags on f, with o's values as defaults.
func (o *SendOptions) BindFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Dir, "dir", o.Dir, "source directory to copy (only read)")
	f.StringVar(&o.Device, "device", o.Device, "source block device to copy instead of a directory (only read)")
	f.StringVar(&o.To, "to", o.To, "server address, HOST:PORT")
	f.StringVar(&o.CertDir, "certs", o.CertDir, "directory with the client's ca.crt, tls.crt and tls.key")
	f.StringVar(&o.SNI, "sni", o.SNI, "TLS server name to send (default: the host of --to when it is a name)")
	f.BoolVar(&o.Checksum, "checksum", o.Checksum, "copy: compare file contents instead of size and mtime (reads every file on both sides)")
	f.BoolVar(&o.Verify, "verify", o.Verify, "after the copy, compare every file by content in a pass of its own (reads every file on both sides); a difference fails the attempt, the next copies by content")
	f.BoolVar(&o.Compress, "compress", o.Compress, "compress file data on the wire (slow links only)")
	f.IntVar(&o.BwLimitKBps, "bwlimit", o.BwLimitKBps, "limit the whole transfer to this many KiB/s (0: none)")
	f.IntVar(&o.Streams, "streams", o.Streams, "parallel rsync streams")
	f.Var(&o.Progress, "progress", "progress output: human, json or none")
	f.IntVar(&o.MaxAttempts, "max-attempts", o.MaxAttempts, "attempts before giving up on transient failures")
	f.DurationVar(&o.Backoff, "backoff", o.Backoff, "wait after the first failed attempt; doubles each time, up to a minute")
}

// Validate checks options read from a command line.
func (o *SendOptions) Validate() error {
	switch {
	case o.Dir != "" && o.Device != "":
		return fmt.Errorf("--dir and --device exclude each other: send a directory or a block device")
	case (o.Dir == "" && o.Device == "") || o.To == "" || o.CertDir == "":
		return fmt.Errorf("--dir (or --device), --to and --certs are required")
	case o.Streams < 1 || o.BwLimitKBps < 0 || o.MaxAttempts < 1:
		return fmt.Errorf("--streams and --max-attempts must be at least 1, --bwlimit not negative")
	}
	return nil
}

// Args renders o as send's arguments: the subcommand, then every flag whose value differs from
// NewSendOptions'.
func (o SendOptions) Args() []string {
	def := NewSendOptions()
	return args("send", o.BindFlags, def.BindFlags)
}

// NewServeOptions returns serve's defaults.
func NewServeOptions() ServeOptions {
	return ServeOptions{Listen: net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort))}
}

// BindFlags defines serve's flags on f, with o's values as defaults.
func (o *ServeOptions) BindFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Dir, "dir", o.Dir, "target directory to write into")
	f.StringVar(&o.Device, "device", o.Device, "target block device to write into instead of a directory")
	f.StringVar(&o.Listen, "listen", o.Listen, "TLS address to listen on, HOST:PORT")
	f.StringVar(&o.CertDir, "certs", o.CertDir, "directory with the server's ca.crt, tls.crt and tls.key")
	f.StringVar(&o.ReadyFile, "ready-file", o.ReadyFile, "file created once TLS is accepted on --listen (removed on exit)")
	f.BoolVar(&o.RequireEmpty, "require-empty", o.RequireEmpty, "refuse (exit 3) when the target holds anything but lost+found (a --device: anything but zeros in its first MiB)")
}

// Validate checks options read from a command line.
func (o *ServeOptions) Validate() error {
	switch {
	case o.Dir != "" && o.Device != "":
		return fmt.Errorf("--dir and --device exclude each other: serve into a directory or a block device")
	case (o.Dir == "" && o.Device == "") || o.CertDir == "":
		return fmt.Errorf("--dir (or --device) and --certs are required")
	}
	return nil
}

// Args renders o as serve's arguments: the subcommand, then every flag whose value differs from
// NewServeOptions'.
func (o ServeOptions) Args() []string {
	def := NewServeOptions()
	return args("serve", o.BindFlags, def.BindFlags)
}

// args binds the same flags twice, to the options to render and to the defaults, and lists
// those that differ as --name=value (in name order, so a pod's command is stable).
func args(command string, bind, bindDefaults func(*pflag.FlagSet)) []string {
	set, defaults := pflag.NewFlagSet(command, pflag.ContinueOnError), pflag.NewFlagSet(command, pflag.ContinueOnError)
	bind(set)
	bindDefaults(defaults)
	out := []string{command}
	set.VisitAll(func(f *pflag.Flag) {
		if v := f.Value.String(); v != defaults.Lookup(f.Name).Value.String() {
			out = append(out, "--"+f.Name+"="+v)
		}
	})
	return out
}

// String, Set and Type make ProgressMode a flag value.
func (m *ProgressMode) String() string { return string(*m) }

func (m *ProgressMode) Set(v string) error {
	switch ProgressMode(v) {
	case ProgressHuman, ProgressJSON, ProgressNone:
		*m = ProgressMode(v)
		return nil
	}
	return fmt.Errorf("--progress must be human, json or none, not %q", v)
}

func (m *ProgressMode) Type() string { return "mode" }
