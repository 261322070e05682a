package emulators

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v4"
)

var pinned = regexp.MustCompile(`^[^@\s]+@sha256:[0-9a-f]{64}$`)

// TestImagesPinnedByDigest checks that every image the Dockerfile builds
// from and docker-compose.yml runs is pinned by digest, except the image
// compose builds itself (a service with build:).
func TestImagesPinnedByDigest(t *testing.T) {
	t.Parallel()
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages := map[string]bool{}
	sc := bufio.NewScanner(f)
	var froms int
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || !strings.EqualFold(fields[0], "FROM") {
			continue
		}
		froms++
		image := fields[1]
		if strings.HasPrefix(image, "--platform") && len(fields) > 2 {
			image = fields[2]
		}
		if !stages[image] && !pinned.MatchString(image) {
			t.Errorf("Dockerfile:%d: FROM %s is not pinned by digest (image@sha256:…)", n, image)
		}
		if len(fields) >= 4 && strings.EqualFold(fields[len(fields)-2], "AS") {
			stages[fields[len(fields)-1]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if froms == 0 {
		t.Error("Dockerfile: no FROM line")
	}

	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image string `yaml:"image"`
			Build any    `yaml:"build"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if len(compose.Services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	for name, s := range compose.Services {
		if s.Build != nil {
			continue // built here from the pinned Dockerfile
		}
		if !pinned.MatchString(s.Image) {
			t.Errorf("docker-compose.yml: service %s: image %q is not pinned by digest (image@sha256:…)", name, s.Image)
		}
	}
}
