package dataplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Files in the control module.
const (
	capabilitiesFile = "capabilities.json" // written by serve, read by send
	completeFile     = "complete.json"     // written by send when done: serve exits 0
	failedFile       = "failed.json"       // written by send when it gives up: serve exits 1
)

// capabilities says what one side can preserve. The server publishes its own in the control
// module; the client combines them with its own, so it asks only for what both sides support
// (an ACL sent to a filesystem without ACLs fails every file).
type capabilities struct {
	Format int    `json:"format"`
	Rsync  string `json:"rsync"`
	// Protocol is rsync's protocol version.
	Protocol int  `json:"protocol"`
	ACLs     bool `json:"acls"`
	Xattrs   bool `json:"xattrs"`
	// Root: the side runs as uid 0 (on the server: owners are preserved).
	Root bool `json:"root"`
	// RootAttrs: the server may set the volume root's mode, owner and times (it is root, or owns
	// the directory). An unprivileged receiver on a volume owned by root or an fsGroup may not.
	RootAttrs bool `json:"rootAttrs"`
	// Empty: the target held nothing (but lost+found) when the server started: this transfer
	// is a first copy, and every file on the target is one it wrote itself.
	Empty bool `json:"empty"`
	// TargetACLs and TargetXattrs: whether the target already holds ACLs / extended attributes
	// (from an earlier pass); nil while the server is still looking. A client whose source has
	// none may leave rsync's --acls / --xattrs off only if the target has none either: rsync
	// removes a stale attribute only when asked to copy them.
	TargetACLs   *bool `json:"targetACLs,omitempty"`
	TargetXattrs *bool `json:"targetXattrs,omitempty"`
	// Devices: the server can create device files in the target (it is root with CAP_MKNOD;
	// it tried). A client whose server cannot leaves them out (--no-devices) and reports them
	// as skipped: rsync alone would lose them with no more than a line in the server's log.
	Devices bool `json:"devices"`
	// Manifest: the target's manifest (manifest.go) is in the control module (true), or
	// could not be made (false); nil while the server is still scanning, and for a first copy.
	Manifest *bool `json:"manifest,omitempty"`
	// Device and DeviceSize: the server writes into a block device (serve --device), named
	// Device in the data module, of DeviceSize bytes; empty for a server of a directory. A
	// block client needs one, a directory client refuses one.
	Device     string `json:"device,omitempty"`
	DeviceSize int64  `json:"deviceSize,omitempty"`
}

const capabilitiesFormat = 1

// probeCapabilities looks at dir's filesystem (read-only: it may be the source volume, mounted
// read-only) and at the rsync build.
func probeCapabilities(dir string, rs rsyncCapabilities) (capabilities, error) {
	c := capabilities{Format: capabilitiesFormat, Rsync: rs.Version, Protocol: rs.Protocol, Root: os.Geteuid() == 0}
	// A filesystem without xattr (and so ACL) support answers ENOTSUP even for reading; one
	// with support answers ENODATA for an attribute that is not set.
	c.Xattrs = rs.Xattrs && xattrSupported(dir, "user.ferry-probe")
	c.ACLs = rs.ACLs && xattrSupported(dir, "system.posix_acl_access")
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return c, fmt.Errorf("%s: %w", dir, err)
	}
	c.RootAttrs = c.Root || int(st.Uid) == os.Geteuid()
	return c, nil
}

func xattrSupported(path, name string) bool {
	_, err := unix.Getxattr(path, name, nil)
	return err == nil || errors.Is(err, unix.ENODATA)
}

func (c capabilities) marshal() []byte {
	b, _ := json.Marshal(c)
	return b
}

func parseCapabilities(b []byte) (capabilities, error) {
	var c capabilities
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("the server's %s is not valid: %v", capabilitiesFile, err)
	}
	if c.Format != capabilitiesFormat {
		return c, fmt.Errorf("the server speaks capabilities format %d, this client %d: use the same ferry-datamover version on both sides", c.Format, capabilitiesFormat)
	}
	return c, nil
}
