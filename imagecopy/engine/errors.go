package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"

	"github.com/ferry-dev/ferry/imagecopy"
)

// transient reports whether an error may go away if the copy is tried again: the registry was
// unreachable, overloaded or failed internally, or the connection broke. A refused login, a
// missing image, a certificate that does not verify or a refused write will not.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var (
		unauthorized docker.ErrUnauthorizedForCredentials
		unknownCA    x509.UnknownAuthorityError
		hostname     x509.HostnameError
		invalid      x509.CertificateInvalidError
		verify       *tls.CertificateVerificationError
	)
	if errors.As(err, &unauthorized) || errors.As(err, &unknownCA) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify) {
		return false
	}
	if status, ok := httpStatus(err); ok {
		return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
	}
	if errors.Is(err, docker.ErrTooManyRequests) {
		return true
	}
	var opErr *net.OpError
	var netErr net.Error
	return errors.As(err, &opErr) || (errors.As(err, &netErr) && netErr.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// httpStatus digs the registry's HTTP status out of an error, when there is one.
func httpStatus(err error) (int, bool) {
	var status docker.UnexpectedHTTPStatusError
	if errors.As(err, &status) {
		return status.StatusCode, true
	}
	var ec errcode.Error
	if errors.As(err, &ec) {
		return ec.Code.Descriptor().HTTPStatusCode, true
	}
	var ecs errcode.Errors
	if errors.As(err, &ecs) && len(ecs) > 0 {
		return httpStatus(ecs[0])
	}
	// A response whose body is not a registry error is reported in an unexported type whose text
	// is "StatusCode: NNN, …".
	if m := statusCodeText.FindStringSubmatch(err.Error()); m != nil {
		code, _ := strconv.Atoi(m[1])
		return code, true
	}
	return 0, false
}

var statusCodeText = regexp.MustCompile(`StatusCode: (\d{3}),`)

// hint adds what to check to errors a user can fix.
func hint(err error, from, to imagecopy.Access) string {
	var unauthorized docker.ErrUnauthorizedForCredentials
	status, _ := httpStatus(err)
	switch {
	case errors.As(err, &unauthorized) || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return " (access denied: check the credentials, " + from.Host + " used " + from.CredentialsFrom + ", " + to.Host + " used " + to.CredentialsFrom + ")"
	case status == http.StatusNotFound:
		return " (not found: the image is gone from the source registry, or the repository does not exist)"
	case status == http.StatusMethodNotAllowed:
		return " (the registry refuses writes: is it read-only?)"
	}
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA) || errors.As(err, &verify):
		return " (TLS verification failed: put the registry's CA in the Secret named by registryCASecret in ferry-config)"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return " (the registry speaks plain HTTP: only registryInsecure=true in ferry-config allows that)"
	}
	return ""
}
