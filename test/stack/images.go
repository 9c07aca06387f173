package stack

import (
	"path/filepath"

	"github.com/ferry-dev/ferry/test/images"
)

// ImageCacheDir is where the stack's images are cached: next to ToolsDir (the same cache root,
// $FERRY_CACHE_DIR), in images/.
func ImageCacheDir() string { return filepath.Join(filepath.Dir(ToolsDir()), "images") }

// ImageOptions are the image build options of this checkout: the cache, ferry's binaries and
// the repository root.
func ImageOptions() (images.Options, error) {
	root, err := RepoRoot()
	if err != nil {
		return images.Options{}, err
	}
	bin, err := FerryBinDir()
	if err != nil {
		return images.Options{}, err
	}
	return images.Options{CacheDir: ImageCacheDir(), FerryBinDir: bin, RepoRoot: root}, nil
}
