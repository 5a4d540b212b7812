package k8s_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// koVersion is the ko that k8s/README.md installs.
const koVersion = "v0.19.1"

// TestImagesBuild builds, with ko and k8s/.ko.yaml, the image of every
// ko:// reference of the dev overlay into a tarball, and checks that each
// runs the binary of its component. Nothing is pushed: the base image comes
// from a registry this test serves on loopback (an empty static image), so
// the test needs no network; a real build takes the base .ko.yaml names.
func TestImagesBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("building three images takes minutes")
	}
	ko, err := exec.LookPath("ko")
	if err != nil {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		ko = filepath.Join(strings.TrimSpace(string(gopath)), "bin", "ko")
		if _, err := os.Stat(ko); err != nil {
			t.Skipf("ko is not installed, so the images cannot be built here: go install github.com/google/ko@%s (k8s/README.md, \"Images\")", koVersion)
		}
	}
	if out, err := exec.Command(ko, "version").Output(); err == nil && strings.TrimSpace(string(out)) != koVersion {
		t.Logf("ko %s, not the %s k8s/README.md names", strings.TrimSpace(string(out)), koVersion)
	}

	b, err := buildOverlay(filesys.MakeFsOnDisk(), "overlays/dev")
	if err != nil {
		t.Fatal(err)
	}
	components := map[string]string{} // import path → component
	for _, d := range of[*appsv1.Deployment](b) {
		for _, c := range d.Spec.Template.Spec.Containers {
			if path, ok := strings.CutPrefix(c.Image, "ko://"); ok {
				components[path] = c.Name
			}
		}
	}
	if len(components) != 3 {
		t.Fatalf("the dev overlay has %d ko:// images, not the 3 of front, matcher and assigner", len(components))
	}

	base := serveBaseImage(t)
	out := filepath.Join(t.TempDir(), "images.tar")
	root, _ := filepath.Abs(repoRoot)
	config, _ := filepath.Abs(".ko.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	args := []string{"build", "--push=false", "--tarball=" + out, "--sbom=none", "--base-import-paths",
		"--tags=test", "--platform=linux/" + runtime.GOARCH}
	cmd := exec.CommandContext(ctx, ko, append(args, slices.Sorted(maps.Keys(components))...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KO_DOCKER_REPO=quickmatch.test", "KO_DEFAULTBASEIMAGE="+base, "KO_CONFIG_PATH="+config)
	if log, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ko build: %v\n%s", err, log)
	}

	images, err := readImageTarball(out)
	if err != nil {
		t.Fatal(err)
	}
	for path, component := range components {
		tag := "quickmatch.test/" + component + ":test"
		img, ok := images[tag]
		if !ok {
			t.Errorf("the tarball has no %s (it has %v)", tag, slices.Sorted(maps.Keys(images)))
			continue
		}
		binary := "/ko-app/" + component
		if !slices.Equal(img.entrypoint, []string{binary}) {
			t.Errorf("%s: entrypoint %v, not [%s]", tag, img.entrypoint, binary)
		}
		data, ok := img.files[strings.TrimPrefix(binary, "/")]
		if !ok {
			t.Errorf("%s has no %s", tag, binary)
			continue
		}
		file := filepath.Join(t.TempDir(), component)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		info, err := buildinfo.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %s: %v", tag, binary, err)
			continue
		}
		if info.Path != path {
			t.Errorf("%s: %s is built from %s, not %s", tag, binary, info.Path, path)
		}
		for _, s := range info.Settings {
			if s.Key == "CGO_ENABLED" && s.Value != "0" || s.Key == "GOOS" && s.Value != "linux" {
				t.Errorf("%s: %s was built with %s=%s", tag, binary, s.Key, s.Value)
			}
		}
		for _, dep := range info.Deps {
			if strings.HasPrefix(dep.Path, "k8s.io/") || strings.HasPrefix(dep.Path, "sigs.k8s.io/") {
				t.Errorf("%s: %s links %s, a dependency of the tests only", tag, binary, dep.Path)
			}
		}
	}
}

// serveBaseImage serves, on loopback, a registry holding one image with no
// layer, for linux on this machine's architecture, running as 65532, and
// answers its reference.
func serveBaseImage(t *testing.T) string {
	t.Helper()
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"User": "65532:65532", "Env": []string{"PATH=/usr/bin:/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": len(config)},
		"layers":        []any{},
	})
	blobs := map[string][]byte{digest(config): config}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/v2/" || p == "/v2":
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(p, "/v2/base/manifests/"):
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", digest(manifest))
			w.Header().Set("Content-Length", fmt.Sprint(len(manifest)))
			if r.Method != http.MethodHead {
				w.Write(manifest)
			}
		case strings.HasPrefix(p, "/v2/base/blobs/"):
			blob, ok := blobs[strings.TrimPrefix(p, "/v2/base/blobs/")]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
			if r.Method != http.MethodHead {
				w.Write(blob)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://") + "/base:test"
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// image is what a test needs of an image of a docker-save tarball.
type image struct {
	entrypoint []string
	files      map[string][]byte // regular files of every layer, by path
}

// readImageTarball reads the images of a tarball as ko --tarball (a docker
// save archive) writes them, by tag.
func readImageTarball(path string) (map[string]*image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		entries[h.Name] = data
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &manifest); err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", path, err)
	}
	images := map[string]*image{}
	for _, m := range manifest {
		var config struct {
			Config struct{ Entrypoint []string }
		}
		if err := json.Unmarshal(entries[m.Config], &config); err != nil {
			return nil, fmt.Errorf("%s: config %s: %w", path, m.Config, err)
		}
		img := &image{entrypoint: config.Config.Entrypoint, files: map[string][]byte{}}
		for _, l := range m.Layers {
			if err := readLayer(entries[l], img.files); err != nil {
				return nil, fmt.Errorf("%s: layer %s: %w", path, l, err)
			}
		}
		for _, tag := range m.RepoTags {
			images[tag] = img
		}
	}
	return images, nil
}

// readLayer adds the regular files of a layer, gzipped or not, to files.
func readLayer(data []byte, files map[string][]byte) error {
	var r io.Reader = bytes.NewReader(data)
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return err
		}
		r = gz
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(h.Name, "/")] = data
	}
}
