package stack

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"time"
)

const (
	s3Bucket = "velero"
	s3Region = "us-east-1" // versitygw rejects every other region
)

// startS3 runs versitygw over a folder; a bucket is a sub-folder. Both clusters' Velero servers
// use the same bucket, as a migration does.
func (s *Stack) startS3(ctx context.Context) error {
	root := filepath.Join(s.Dir, "s3")
	s.S3 = S3{
		Endpoint:  "http://" + hostPort(s.addrs.s3(), s3Port),
		Bucket:    s3Bucket,
		BucketDir: filepath.Join(root, s3Bucket),
		Region:    s3Region,
		AccessKey: "ferry" + randomToken(6),
		SecretKey: randomToken(20),
	}
	if err := os.MkdirAll(s.S3.BucketDir, 0o755); err != nil {
		return err
	}
	p, err := s.StartProcess(ProcessSpec{
		Name: "s3",
		Path: s.tools.versitygw,
		// The keys go through the environment, not argv, so they stay out of the process table
		// and the log's command line.
		Env:  []string{"ROOT_ACCESS_KEY=" + s.S3.AccessKey, "ROOT_SECRET_KEY=" + s.S3.SecretKey},
		Args: []string{"--port", hostPort(s.addrs.s3(), s3Port), "posix", root},
	})
	if err != nil {
		return err
	}
	s.s3 = p
	return waitReady(ctx, p, time.Minute, func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", hostPort(s.addrs.s3(), s3Port))
		if err == nil {
			c.Close()
		}
		return err
	})
}

// veleroCredentials is the AWS shared-credentials file of Velero's AWS plugin.
func (s *Stack) veleroCredentials() []byte {
	return []byte("[default]\naws_access_key_id=" + s.S3.AccessKey + "\naws_secret_access_key=" + s.S3.SecretKey + "\n")
}
