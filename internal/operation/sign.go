package operation

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// A request is written as annotations anyone who may edit the object can change, so on its own
// it proves nothing. Whoever may read the Secret RequestKeySecret in Velero's namespace —
// Velero's plugins, and admins through `ferry-datamover request` — signs it: an HMAC-SHA256 over
// the kind, the object's UID, its name, the time of issue and every key that shapes what is
// done. The sidecar acts only on a request whose signature checks out: a tenant can neither
// write one, nor change its target, nor move it to another object (the UID differs).

// RequestKeySecret is the Secret in Velero's namespace whose key RequestKeyField signs
// requests. The sidecar creates it on first start; `kubectl delete` it to rotate the key (no
// request may be in flight then).
const (
	RequestKeySecret = "ferry-request-key"
	RequestKeyField  = "key"
)

// MaxRequestAge is how long a signed request may wait before the sidecar first sees it. A
// request older than that is refused: an old signature copied back onto an object does not
// start a transfer nobody asked for today.
const MaxRequestAge = 24 * time.Hour

// signatureVersion prefixes every signature, so the scheme can change.
const signatureVersion = "v1"

// NewRequestKey returns a fresh random signing key.
func NewRequestKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

// Sign returns the signature of the request in ann (the request's annotations, as Annotations
// renders them) on object namespace/name with uid, issued at now.
func (k Keys) Sign(key []byte, uid types.UID, namespace, name string, ann map[string]string, now time.Time) (string, error) {
	if len(key) < 16 {
		return "", errors.New("the request signing key is missing or too short")
	}
	issued := now.Unix()
	mac := k.mac(key, uid, namespace, name, ann, issued)
	return signatureVersion + "." + strconv.FormatInt(issued, 10) + "." + base64.RawURLEncoding.EncodeToString(mac), nil
}

// ErrUnsigned: the request has no signature at all.
var ErrUnsigned = errors.New("the request is not signed")

// Verify checks the signature annotation of the request on object namespace/name with uid and
// returns when it was issued. Any change to a signed key, and a signature made for another
// object, fails it.
func (k Keys) Verify(key []byte, uid types.UID, namespace, name string, ann map[string]string) (time.Time, error) {
	sig, ok := ann[k.Signature]
	if !ok || sig == "" {
		return time.Time{}, ErrUnsigned
	}
	parts := strings.SplitN(sig, ".", 3)
	if len(parts) != 3 || parts[0] != signatureVersion {
		return time.Time{}, fmt.Errorf("annotation %s is not a ferry request signature", k.Signature)
	}
	issued, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("annotation %s is not a ferry request signature", k.Signature)
	}
	got, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return time.Time{}, fmt.Errorf("annotation %s is not a ferry request signature", k.Signature)
	}
	if len(key) < 16 {
		return time.Time{}, errors.New("the request signing key is missing or too short")
	}
	if !hmac.Equal(got, k.mac(key, uid, namespace, name, ann, issued)) {
		return time.Time{}, fmt.Errorf("the signature in %s does not match the request: it was changed after it was signed, copied from another %s, or signed with another key", k.Signature, k.Kind)
	}
	return time.Unix(issued, 0), nil
}

// mac is the HMAC of the request's canonical form: one line each for the scheme, kind, UID,
// object and time, then "key=value" for every signed key present, sorted.
func (k Keys) mac(key []byte, uid types.UID, namespace, name string, ann map[string]string, issued int64) []byte {
	var lines []string
	for _, key := range k.Signed() {
		if v, ok := ann[key]; ok {
			lines = append(lines, key+"="+strconv.Quote(v))
		}
	}
	sort.Strings(lines)
	h := hmac.New(sha256.New, key)
	fmt.Fprintf(h, "ferry-request-%s\n%s\n%s\n%s/%s\n%d\n", signatureVersion, k.Kind, uid, namespace, name, issued)
	h.Write([]byte(strings.Join(lines, "\n")))
	return h.Sum(nil)
}
