package helm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestSidecarExample: sidecarExample.enabled renders a compute service's
// Deployment with tcs-sidecar beside it: the sidecar asks every region's
// lookup Service (local first), over TLS checked with the lookup
// certificate's ca.crt and with the lookup token when the lookup nodes
// serve TLS, in plaintext without a token otherwise; it probes itself
// (--probe: the kubelet cannot reach its loopback listener), runs as the
// other containers do, and its rendered arguments are ones the binary
// accepts. Off by default (TestRender: no such Deployment).
func TestSidecarExample(t *testing.T) {
	t.Parallel()
	bin := buildSidecar(t)
	for _, tc := range []struct {
		name      string
		files     []string
		overrides map[string]any
		regions   string
		tls       bool
	}{
		{"defaults", nil, map[string]any{"sidecarExample": map[string]any{"enabled": true}},
			"--regions=us-east-1=tcs-lookup-us-east-1.tcs.svc:9001", true},
		{"multi-region, local first, plaintext", []string{"testdata/multi-region.yaml"},
			map[string]any{"sidecarExample": map[string]any{"enabled": true, "regions": []any{"eu-west-1", "us-east-1"}}},
			"--regions=eu-west-1=tcs-lookup-eu-west-1.tcs.svc:9001,us-east-1=tcs-lookup-us-east-1.tcs.svc:9001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := renderWith(t, tc.files, tc.overrides)
			d := o.deployments["tcs-sidecar-example"]
			if d == nil {
				t.Fatalf("no tcs-sidecar-example Deployment; have %v", sortedKeys(o.deployments))
			}
			pod := d.Spec.Template.Spec
			if len(pod.Containers) != 2 || pod.Containers[0].Name != "app" || pod.Containers[1].Name != "tcs-sidecar" {
				t.Fatalf("containers %v, want app and tcs-sidecar", pod.Containers)
			}
			if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
				t.Error("the example mounts a Kubernetes API token")
			}
			if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("pod may run as root: %+v", psc)
			}
			for _, c := range pod.Containers {
				checkSecurity(t, "tcs-sidecar-example/"+c.Name, c.SecurityContext)
				if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
					t.Errorf("%s: resources %v", c.Name, c.Resources)
				}
			}
			sc := pod.Containers[1]
			checkGOMEMLIMIT(t, "tcs-sidecar-example", sc)
			if !slices.Equal(sc.Command, []string{"/usr/local/bin/tcs-sidecar"}) || !slices.Contains(sc.Args, tc.regions) {
				t.Errorf("sidecar %q %q, want tcs-sidecar with %s", sc.Command, sc.Args, tc.regions)
			}
			var token *corev1.EnvVar
			for i := range sc.Env {
				if sc.Env[i].Name == "TCS_LOOKUP_TOKEN" {
					token = &sc.Env[i]
				}
			}
			hasCA := slices.Contains(sc.Args, "--ca-file=/etc/tcs/lookup-ca/ca.crt")
			switch {
			case tc.tls && (!hasCA || token == nil || token.ValueFrom == nil || token.ValueFrom.SecretKeyRef == nil || token.ValueFrom.SecretKeyRef.Name != "tcs-sidecar-lookup-token"):
				t.Errorf("TLS lookups: args %q, token %+v; want --ca-file and the token from its Secret", sc.Args, token)
			case !tc.tls && (hasCA || token != nil):
				t.Errorf("plaintext lookups: args %q, token %+v; want neither --ca-file nor a token (the sidecar refuses a token in clear)", sc.Args, token)
			}
			if tc.tls {
				checkCAVolume(t, pod, sc)
			}
			for kind, p := range map[string]*corev1.Probe{"startup": sc.StartupProbe, "liveness": sc.LivenessProbe, "readiness": sc.ReadinessProbe} {
				if p == nil || p.Exec == nil || len(p.Exec.Command) != 2 || p.Exec.Command[0] != "/usr/local/bin/tcs-sidecar" || !strings.HasPrefix(p.Exec.Command[1], "--probe=/") {
					t.Errorf("%s probe %+v, want tcs-sidecar --probe", kind, p)
				}
			}
			// The binary takes the rendered arguments, and its probes'.
			env, err := containerEnv(sc)
			if err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{sc.Args, sc.LivenessProbe.Exec.Command[1:]} {
				cmd := exec.Command(bin, append(slices.Clone(args), "-h")...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				out, _ := cmd.CombinedOutput()
				if first, _, _ := strings.Cut(string(out), "\n"); !strings.HasPrefix(first, "Usage of tcs-sidecar") {
					t.Errorf("tcs-sidecar %q refused its arguments:\n%s", args, out)
				}
			}
		})
	}
}

func checkCAVolume(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	for _, v := range pod.Volumes {
		if v.Name != "lookup-ca" {
			continue
		}
		if v.Secret == nil || v.Secret.SecretName != "tcs-lookup-tls" || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "ca.crt" ||
			v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 {
			t.Errorf("volume lookup-ca %+v, want only ca.crt of the lookup TLS Secret, not readable by others", v.VolumeSource)
		}
		for _, m := range c.VolumeMounts {
			if m.Name == "lookup-ca" && m.MountPath == "/etc/tcs/lookup-ca" {
				return
			}
		}
	}
	t.Errorf("no lookup-ca volume mounted at /etc/tcs/lookup-ca: %v %v", pod.Volumes, c.VolumeMounts)
}

func buildSidecar(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds tcs-sidecar")
	}
	bin := filepath.Join(t.TempDir(), "tcs-sidecar")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tcs-sidecar").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
