package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"syscall"
	"testing"

	"github.com/docker/distribution/registry/api/errcode"
	"github.com/stretchr/testify/assert"
	"go.podman.io/image/v5/docker"
)

func TestTransient(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://r/v2/", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("pinging container registry r: %w", refused), true},
		{"connection reset mid-blob", fmt.Errorf("writing blob: %w", syscall.ECONNRESET), true},
		{"truncated body", fmt.Errorf("reading blob: %w", io.ErrUnexpectedEOF), true},
		{"registry overloaded (503)", fmt.Errorf("x: %w", errcode.ErrorCodeUnavailable.WithMessage("busy")), true},
		{"rate limited", docker.ErrTooManyRequests, true},
		{"internal error (500)", fmt.Errorf("x: %w", errcode.ErrorCodeUnknown.WithMessage("oops")), true},
		{"denied", docker.ErrUnauthorizedForCredentials{Err: errors.New("nope")}, false},
		{"forbidden (errcode)", fmt.Errorf("x: %w", errcode.ErrorCodeDenied.WithMessage("no")), false},
		{"unknown CA inside a url.Error (which is a net.Error)", &url.Error{Op: "Get", URL: "https://r/v2/", Err: x509.UnknownAuthorityError{}}, false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"a gateway error without a registry body", errors.New(`initiating layer upload to /v2/a/blobs/uploads/ in r: StatusCode: 502, "Bad Gateway"`), true},
		{"write refused without a registry body", errors.New(`initiating layer upload to /v2/a/blobs/uploads/ in r: StatusCode: 405, "Method not allowed"`), false},
		{"anything else", errors.New("manifest unknown"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, transient(tt.err))
		})
	}
}
