package helm_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartsave "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "tcs"
	rulesDir  = "../prometheus/rules"
	release   = "tcs"
	namespace = "tcs"
)

// kubeVersion is the cluster version the chart is rendered for: the
// oldest its Chart.yaml accepts (native gRPC probes are GA in 1.27).
var kubeVersion = func() *common.KubeVersion {
	v, err := common.ParseKubeVersion("v1.27.0")
	if err != nil {
		panic(err)
	}
	return v
}()

// cases are the values the chart is checked with.
var cases = []struct {
	name  string
	files []string
	// What the values ask for.
	regions           []string
	catalog           bool // catalog, publishers and reconciler run
	tls               bool // catalog and lookup serve TLS
	monitoring        bool
	autoscaledRegions []string
}{
	{name: "defaults", regions: []string{"us-east-1"}, catalog: true, tls: true, monitoring: true, autoscaledRegions: []string{"us-east-1"}},
	{name: "multi-region", files: []string{"testdata/multi-region.yaml"}, regions: []string{"us-east-1", "us-west-2", "eu-west-1"}, catalog: true, monitoring: true, autoscaledRegions: []string{"us-east-1", "us-west-2"}},
	{name: "secondary-region", files: []string{"testdata/secondary-region.yaml"}, regions: []string{"ap-southeast-2"}, tls: true, autoscaledRegions: []string{"ap-southeast-2"}},
	{name: "propagation", files: []string{"testdata/propagation.yaml"}, regions: []string{"us-east-1"}, catalog: true, tls: true, monitoring: true, autoscaledRegions: []string{"us-east-1"}},
}

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return ch
}

// userValues merges the values files, in order, and then overrides.
func userValues(t testing.TB, files []string, overrides map[string]any) map[string]any {
	t.Helper()
	vals := map[string]any{}
	for _, f := range files {
		v, err := common.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("values file %s: %v", f, err)
		}
		vals = loader.MergeMaps(vals, v)
	}
	return loader.MergeMaps(vals, overrides)
}

// renderChart renders the chart as `helm template` would, returning the
// manifests by template name.
func renderChart(t testing.TB, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kubeVersion
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, caps, false)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, top)
}

// Prometheus Operator objects (monitoring.coreos.com/v1), with the fields
// the chart uses: anything else the chart writes is an unknown field.
type serviceMonitor struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port      string `json:"port"`
			Path      string `json:"path"`
			Interval  string `json:"interval"`
			Scheme    string `json:"scheme,omitempty"`
			TLSConfig *struct {
				InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
				ServerName         string `json:"serverName,omitempty"`
				CA                 any    `json:"ca,omitempty"`
			} `json:"tlsConfig,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type prometheusRule struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type objectMeta struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// ruleGroup is a Prometheus rule group, as in a rules file and in the
// PrometheusRule CRD (which has the same fields).
type ruleGroup struct {
	Name     string `json:"name"`
	Interval string `json:"interval,omitempty"`
	Rules    []struct {
		Alert       string            `json:"alert,omitempty"`
		Record      string            `json:"record,omitempty"`
		Expr        string            `json:"expr"`
		For         string            `json:"for,omitempty"`
		Labels      map[string]string `json:"labels,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	} `json:"rules"`
}

// objects are the rendered objects, decoded.
type objects struct {
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	serviceAccounts map[string]*corev1.ServiceAccount
	serviceMonitors []*serviceMonitor
	rules           []*prometheusRule
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes a YAML document into v as the API server's strict
// field validation would: an unknown field, a duplicate field or a field
// in the wrong case is an error.
func decodeStrict(doc []byte, v any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(js, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("strict decoding: %s", strings.Join(msgs, "; "))
	}
	return nil
}

// decodeAll splits the manifests into objects and decodes each strictly
// into the type of its apiVersion and kind; an unexpected kind is an error.
func decodeAll(t *testing.T, manifests map[string]string) *objects {
	t.Helper()
	o := &objects{
		deployments:     map[string]*appsv1.Deployment{},
		services:        map[string]*corev1.Service{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		hpas:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
	}
	names := make([]string, 0, len(manifests))
	for name := range manifests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, file := range names {
		if !strings.HasSuffix(file, ".yaml") {
			continue // _helpers.tpl renders nothing
		}
		for i, doc := range docSeparator.Split(manifests[file], -1) {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s document %d: %v\n%s", file, i, err, doc)
			}
			if head.Kind == "" && head.APIVersion == "" {
				if strings.TrimSpace(stripComments(doc)) != "" {
					t.Fatalf("%s document %d has no apiVersion or kind:\n%s", file, i, doc)
				}
				continue
			}
			var (
				v    any
				keep func()
			)
			key := head.Metadata.Name
			switch head.APIVersion + " " + head.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				v, keep = d, func() { o.deployments[key] = d }
			case "v1 Service":
				s := &corev1.Service{}
				v, keep = s, func() { o.services[key] = s }
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				v, keep = p, func() { o.pdbs[key] = p }
			case "autoscaling/v2 HorizontalPodAutoscaler":
				h := &autoscalingv2.HorizontalPodAutoscaler{}
				v, keep = h, func() { o.hpas[key] = h }
			case "v1 ServiceAccount":
				s := &corev1.ServiceAccount{}
				v, keep = s, func() { o.serviceAccounts[key] = s }
			case "monitoring.coreos.com/v1 ServiceMonitor":
				s := &serviceMonitor{}
				v, keep = s, func() { o.serviceMonitors = append(o.serviceMonitors, s) }
			case "monitoring.coreos.com/v1 PrometheusRule":
				r := &prometheusRule{}
				v, keep = r, func() { o.rules = append(o.rules, r) }
			default:
				t.Fatalf("%s: %s %s %q: a kind the tests do not know; add its type", file, head.APIVersion, head.Kind, key)
			}
			if err := decodeStrict([]byte(doc), v); err != nil {
				t.Fatalf("%s: %s %q does not decode strictly: %v\n%s", file, head.Kind, key, err, doc)
			}
			if key == "" {
				t.Fatalf("%s: %s without a name", file, head.Kind)
			}
			keep()
		}
	}
	return o
}

func stripComments(doc string) string {
	var b strings.Builder
	for l := range strings.Lines(doc) {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l)
		}
	}
	return b.String()
}

func TestLint(t *testing.T) {
	t.Parallel()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := lint.RunAll(chartDir, userValues(t, c.files, nil), namespace, lint.WithKubeVersion(kubeVersion))
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %v", m)
				}
			}
		})
	}
}

func renderCase(t *testing.T, files []string) *objects {
	t.Helper()
	return renderWith(t, files, nil)
}

func renderWith(t *testing.T, files []string, overrides map[string]any) *objects {
	t.Helper()
	manifests, err := renderChart(t, userValues(t, files, overrides))
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return decodeAll(t, manifests)
}

func TestRender(t *testing.T) {
	t.Parallel()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o := renderCase(t, c.files)

			var want []string
			if c.catalog {
				want = append(want, "tcs-catalog", "tcs-publisher", "tcs-reconciler")
			}
			for _, r := range c.regions {
				want = append(want, "tcs-apply-"+r, "tcs-lookup-"+r)
			}
			sort.Strings(want)
			if diff := cmp.Diff(want, sortedKeys(o.deployments)); diff != "" {
				t.Errorf("Deployments (-want +got):\n%s", diff)
			}
			// Every Deployment has a Service (the ServiceMonitor's way in)
			// and a disruption budget selecting its pods.
			if diff := cmp.Diff(want, sortedKeys(o.services)); diff != "" {
				t.Errorf("Services (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, sortedKeys(o.pdbs)); diff != "" {
				t.Errorf("PodDisruptionBudgets (-want +got):\n%s", diff)
			}
			var wantHPA []string
			for _, r := range c.autoscaledRegions {
				wantHPA = append(wantHPA, "tcs-lookup-"+r)
			}
			sort.Strings(wantHPA)
			if diff := cmp.Diff(wantHPA, sortedKeys(o.hpas)); diff != "" {
				t.Errorf("HorizontalPodAutoscalers (-want +got):\n%s", diff)
			}
			if got := len(o.serviceMonitors) + len(o.rules); c.monitoring != (got == 2) || (!c.monitoring && got != 0) {
				t.Errorf("monitoring %v: %d ServiceMonitors, %d PrometheusRules", c.monitoring, len(o.serviceMonitors), len(o.rules))
			}

			for name, d := range o.deployments {
				checkDeployment(t, name, d, o, c.tls)
			}
			if c.catalog {
				checkPublishersAndReconciler(t, o, c.regions)
			}
			for name, s := range o.services {
				checkService(t, name, s, o)
			}
			for name, p := range o.pdbs {
				if d := selected(o, p.Spec.Selector.MatchLabels); len(d) != 1 || d[0] != name {
					t.Errorf("PodDisruptionBudget %s selects %v, want its Deployment", name, d)
				}
				if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
					t.Errorf("PodDisruptionBudget %s allows nothing and forbids nothing", name)
				}
				if pol := p.Spec.UnhealthyPodEvictionPolicy; pol == nil || *pol != policyv1.AlwaysAllow {
					t.Errorf("PodDisruptionBudget %s: unhealthyPodEvictionPolicy %v, want AlwaysAllow (a stuck pod must not block drains)", name, pol)
				}
			}
			for name, h := range o.hpas {
				checkHPA(t, name, h, o)
			}
			for _, sm := range o.serviceMonitors {
				checkServiceMonitor(t, sm, o)
			}
		})
	}
}

// checkPublishersAndReconciler: two publishers (they share the outbox's
// shards through leases: no single point of failure), and one reconciler
// comparing every region, replaced rather than overlapped (it consumes the
// stream under one fixed worker name).
func checkPublishersAndReconciler(t *testing.T, o *objects, regions []string) {
	t.Helper()
	switch p := o.deployments["tcs-publisher"]; {
	case p == nil:
		t.Error("no publisher Deployment")
	case p.Spec.Replicas == nil || *p.Spec.Replicas != 2:
		t.Errorf("publisher Deployment: replicas %v, want 2", p.Spec.Replicas)
	}
	r := o.deployments["tcs-reconciler"]
	if r == nil {
		t.Fatal("no reconciler Deployment")
	}
	if r.Spec.Replicas == nil || *r.Spec.Replicas != 1 || r.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("reconciler Deployment: replicas %v, strategy %q; want 1, Recreate", r.Spec.Replicas, r.Spec.Strategy.Type)
	}
	args := r.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "reconcile" || !slices.Contains(args, "--regions="+strings.Join(regions, ",")) {
		t.Errorf("reconciler args %q, want reconcile --regions=%s", args, strings.Join(regions, ","))
	}
	if sa := r.Spec.Template.Spec.ServiceAccountName; sa != "tcs-reconciler" {
		t.Errorf("reconciler service account %q, want its own (tcs-reconciler: its own IAM role)", sa)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// selected returns the Deployments whose pods carry every label of sel.
func selected(o *objects, sel map[string]string) []string {
	var names []string
	for name, d := range o.deployments {
		if len(sel) > 0 && matches(sel, d.Spec.Template.Labels) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkDeployment(t *testing.T, name string, d *appsv1.Deployment, o *objects, tls bool) {
	t.Helper()
	if d.Spec.Selector == nil || !matches(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("Deployment %s: its selector does not select its own pods", name)
	}
	if got := selected(o, d.Spec.Selector.MatchLabels); len(got) != 1 {
		t.Errorf("Deployment %s: its selector also selects %v", name, got)
	}
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("Deployment %s: pod may run as root: %+v", name, psc)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("Deployment %s: mounts a Kubernetes API token it has no use for", name)
	}
	for _, c := range pod.TopologySpreadConstraints {
		if c.LabelSelector == nil || !matches(c.LabelSelector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("Deployment %s: topology spread over %s does not select its own pods", name, c.TopologyKey)
		}
	}
	if _, ok := o.serviceAccounts[pod.ServiceAccountName]; !ok {
		t.Errorf("Deployment %s: service account %q is not rendered", name, pod.ServiceAccountName)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers, want 1", name, len(pod.Containers))
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
			t.Errorf("Deployment %s: Secret volume %s is readable by others", name, v.Name)
		}
	}
	for _, c := range slices.Concat(pod.InitContainers, pod.Containers) {
		checkSecurity(t, name+"/"+c.Name, c.SecurityContext)
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				t.Errorf("Deployment %s/%s mounts volume %s, which the pod does not have", name, c.Name, m.Name)
			}
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("Deployment %s/%s: resources %v: want CPU and memory requests and a memory limit", name, c.Name, c.Resources)
		}
	}
	c := pod.Containers[0]
	checkGOMEMLIMIT(t, name, c)
	checkFileArgs(t, name, pod)

	// Probes reach ports the container declares; lookup nodes probe gRPC
	// health unless they serve TLS (which the kubelet's gRPC probe cannot).
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil {
			t.Errorf("Deployment %s: no %s probe", name, kind)
			continue
		}
		checkProbe(t, fmt.Sprintf("Deployment %s %s probe", name, kind), p, ports)
	}
	if c.StartupProbe != nil {
		checkProbe(t, fmt.Sprintf("Deployment %s startup probe", name), c.StartupProbe, ports)
	}
	component := d.Spec.Template.Labels["app.kubernetes.io/component"]
	switch component {
	case "lookup":
		if tls {
			if c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Port.StrVal != "metrics" {
				t.Errorf("Deployment %s serves TLS: readiness %+v, want HTTP on the metrics port", name, c.ReadinessProbe.ProbeHandler)
			}
		} else if c.ReadinessProbe.GRPC == nil || c.ReadinessProbe.GRPC.Port != ports["grpc"] {
			t.Errorf("Deployment %s: readiness %+v, want the gRPC health check on port grpc (%d)", name, c.ReadinessProbe.ProbeHandler, ports["grpc"])
		}
		if !slices.Contains(c.Args, "--hot-keys-file=/var/lib/tcs/hot-keys") {
			t.Errorf("Deployment %s: args %v, want --hot-keys-file (lookup.hotKeys.enabled is the default)", name, c.Args)
		}
		// gRPC health is readiness (NOT_SERVING while the replica is
		// unreadable): as liveness it would restart every node of a region
		// whose replica is down.
		if h := c.LivenessProbe.HTTPGet; h == nil || h.Path != "/healthz" || h.Port.StrVal != "metrics" {
			t.Errorf("Deployment %s: liveness %+v, want HTTP /healthz on the metrics port", name, c.LivenessProbe.ProbeHandler)
		}
	case "catalog":
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			want := corev1.URISchemeHTTP
			if tls {
				want = corev1.URISchemeHTTPS
			}
			if p.HTTPGet == nil || p.HTTPGet.Scheme != want {
				t.Errorf("Deployment %s: probe %+v, want %s", name, p.ProbeHandler, want)
			}
		}
		if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("Deployment %s: probes %s, %s; want /readyz, /healthz", name, c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
		}
	case "publisher", "applier", "reconciler":
		// streamer's /readyz: the publisher read the outbox lately; an
		// applier holds a lease, which standbys never do, so appliers are
		// ready while alive (see regions.yaml).
		// The reconciler's: a comparison succeeded lately.
		want := map[string]string{"publisher": "/readyz", "applier": "/healthz", "reconciler": "/readyz"}[component]
		if h := c.ReadinessProbe.HTTPGet; h == nil || h.Path != want || h.Port.StrVal != "metrics" {
			t.Errorf("Deployment %s: readiness %+v, want HTTP %s on the metrics port", name, c.ReadinessProbe.ProbeHandler, want)
		}
		if h := c.LivenessProbe.HTTPGet; h == nil || h.Path != "/healthz" || h.Port.StrVal != "metrics" {
			t.Errorf("Deployment %s: liveness %+v, want HTTP /healthz on the metrics port", name, c.LivenessProbe.ProbeHandler)
		}
	default:
		t.Errorf("Deployment %s: component label %q", name, component)
	}
	if strings.HasPrefix(name, "tcs-lookup-") {
		if _, autoscaled := o.hpas[name]; autoscaled && d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas (%d) although an autoscaler owns them: every upgrade would reset them", name, *d.Spec.Replicas)
		}
	}
}

// checkFileArgs: a file a flag names is on a volume the container mounts,
// and the credentials file on the volume the init container fills (mode
// 0600, which a Secret volume cannot give a non-root reader).
func checkFileArgs(t *testing.T, name string, pod corev1.PodSpec) {
	t.Helper()
	c := pod.Containers[0]
	mountOf := func(ctr corev1.Container, path string) string {
		for _, m := range ctr.VolumeMounts {
			if strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/") {
				return m.Name
			}
		}
		return ""
	}
	for _, a := range c.Args {
		flag, path, ok := strings.Cut(a, "=")
		if !ok || !slices.Contains([]string{"--tokens-file", "--tls-cert", "--tls-key", "--tls-client-ca", "--hot-keys-file", "--nodes-ca-file"}, flag) {
			continue
		}
		vol := mountOf(c, path)
		if vol == "" {
			t.Errorf("Deployment %s: %s is on no volume the container mounts", name, a)
			continue
		}
		if flag == "--hot-keys-file" {
			// The node writes it (atomically: a temporary file beside it,
			// then a rename), so its directory must be writable: the root
			// filesystem is read-only.
			for _, m := range c.VolumeMounts {
				if m.Name == vol && m.ReadOnly {
					t.Errorf("Deployment %s: %s is on read-only mount %s", name, a, m.MountPath)
				}
			}
			for _, v := range pod.Volumes {
				if v.Name == vol && (v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil) {
					t.Errorf("Deployment %s: %s is on volume %s, want an emptyDir with a size limit", name, a, vol)
				}
			}
			continue
		}
		if flag != "--tokens-file" {
			continue
		}
		filled := false
		for _, ic := range pod.InitContainers {
			if mountOf(ic, path) == vol && slices.Contains(ic.Command, path) && slices.Contains(ic.Command, "0600") {
				filled = true
			}
		}
		if !filled {
			t.Errorf("Deployment %s: no init container writes %s with mode 0600", name, path)
		}
	}
}

func checkSecurity(t *testing.T, where string, sc *corev1.SecurityContext) {
	t.Helper()
	switch {
	case sc == nil:
		t.Errorf("%s: no security context", where)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s: runAsNonRoot not set", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s: root filesystem writable", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s: privilege escalation allowed", where)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s: privileged", where)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s: capabilities %+v, want all dropped and none added", where, sc.Capabilities)
	}
}

func checkProbe(t *testing.T, where string, p *corev1.Probe, ports map[string]int32) {
	t.Helper()
	hasPort := func(port intstr.IntOrString) bool {
		if port.Type == intstr.String {
			_, ok := ports[port.StrVal]
			return ok
		}
		return slices.Contains(slices.Collect(mapValues(ports)), port.IntVal)
	}
	switch {
	case p.HTTPGet != nil:
		if !hasPort(p.HTTPGet.Port) {
			t.Errorf("%s: port %s is not one of the container's %v", where, p.HTTPGet.Port.String(), ports)
		}
		if p.HTTPGet.Path != "/healthz" && p.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: path %q", where, p.HTTPGet.Path)
		}
	case p.GRPC != nil:
		if !hasPort(intstr.FromInt32(p.GRPC.Port)) {
			t.Errorf("%s: gRPC port %d is not one of the container's %v", where, p.GRPC.Port, ports)
		}
	default:
		t.Errorf("%s: %+v, want an HTTP or gRPC probe", where, p.ProbeHandler)
	}
}

func mapValues[K comparable, V any](m map[K]V) func(func(V) bool) {
	return func(yield func(V) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// checkGOMEMLIMIT: the container's GOMEMLIMIT expands (as the kubelet
// expands $(VAR)) to a value the Go runtime accepts, below the memory
// limit.
func checkGOMEMLIMIT(t *testing.T, name string, c corev1.Container) {
	t.Helper()
	limit := c.Resources.Limits.Memory()
	env, err := containerEnv(c)
	if err != nil {
		t.Errorf("Deployment %s: %v", name, err)
		return
	}
	got, ok := env["GOMEMLIMIT"]
	if !ok {
		t.Errorf("Deployment %s: no GOMEMLIMIT", name)
		return
	}
	bytes, err := parseGoMemLimit(got)
	if err != nil {
		t.Errorf("Deployment %s: GOMEMLIMIT %q: %v", name, got, err)
		return
	}
	if l := limit.Value(); bytes >= l || bytes < l*9/10 {
		t.Errorf("Deployment %s: GOMEMLIMIT %q is %d bytes, want 90–100%% of the memory limit %s (%d)", name, got, bytes, limit, l)
	}
}

// containerEnv resolves c's environment as the kubelet would for its
// memory limit: resourceFieldRef limits.memory over its divisor, the pod
// fields metadata.name and status.podIP (as example values), and $(VAR)
// references to variables defined before.
func containerEnv(c corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
			r := e.ValueFrom.ResourceFieldRef
			if r.Resource != "limits.memory" {
				return nil, fmt.Errorf("%s: resource %s", e.Name, r.Resource)
			}
			div := resource.MustParse("1")
			if !r.Divisor.IsZero() {
				div = r.Divisor
			}
			q := c.Resources.Limits.Memory()
			env[e.Name] = fmt.Sprint((q.Value() + div.Value() - 1) / div.Value())
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			switch f := e.ValueFrom.FieldRef.FieldPath; f {
			case "metadata.name":
				env[e.Name] = "tcs-example-7d9f8b6c4-x2x5q"
			case "status.podIP":
				env[e.Name] = "10.1.2.3"
			default:
				return nil, fmt.Errorf("%s: field %s", e.Name, f)
			}
		case e.ValueFrom != nil:
		default:
			env[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(m string) string {
				if v, ok := env[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
		}
	}
	return env, nil
}

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does (bytes with an
// optional B, KiB, MiB, GiB or TiB suffix); the binaries, run with it in
// TestArgsAcceptedByBinaries, confirm.
func parseGoMemLimit(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("not a number of bytes with a B, KiB, MiB, GiB or TiB suffix")
	}
	var n int64
	if _, err := fmt.Sscan(m[1], &n); err != nil {
		return 0, err
	}
	shift := map[string]uint{"": 0, "B": 0, "KiB": 10, "MiB": 20, "GiB": 30, "TiB": 40}[m[2]]
	return n << shift, nil
}

func checkService(t *testing.T, name string, s *corev1.Service, o *objects) {
	t.Helper()
	sel := selected(o, s.Spec.Selector)
	if len(sel) != 1 {
		t.Errorf("Service %s selects Deployments %v, want one", name, sel)
		return
	}
	d := o.deployments[sel[0]]
	ports := map[string]bool{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		ports[p.Name] = true
	}
	for _, p := range s.Spec.Ports {
		if p.TargetPort.Type != intstr.String || !ports[p.TargetPort.StrVal] {
			t.Errorf("Service %s port %s: target %s is not a named port of %s", name, p.Name, p.TargetPort.String(), sel[0])
		}
	}
	lookup := d.Spec.Template.Labels["app.kubernetes.io/component"] == "lookup"
	if headless := s.Spec.ClusterIP == corev1.ClusterIPNone; lookup && !headless {
		t.Errorf("Service %s of lookup nodes is not headless: clients could not balance across the nodes", name)
	}
}

func checkHPA(t *testing.T, name string, h *autoscalingv2.HorizontalPodAutoscaler, o *objects) {
	t.Helper()
	ref := h.Spec.ScaleTargetRef
	d, ok := o.deployments[ref.Name]
	if !ok || ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" {
		t.Errorf("HorizontalPodAutoscaler %s scales %+v, not a rendered Deployment", name, ref)
		return
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler %s: replicas %v to %d", name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	// A CPU utilisation target needs a CPU request to be a fraction of.
	if d.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().IsZero() {
		t.Errorf("HorizontalPodAutoscaler %s: %s requests no CPU", name, ref.Name)
	}
}

func checkServiceMonitor(t *testing.T, sm *serviceMonitor, o *objects) {
	t.Helper()
	scraped := map[string]bool{} // Service → one endpoint scrapes it
	for _, ep := range sm.Spec.Endpoints {
		if ep.Path != "/metrics" || ep.Interval == "" {
			t.Errorf("ServiceMonitor endpoint %+v: want path /metrics and an interval", ep)
		}
		for name, s := range o.services {
			if !matches(sm.Spec.Selector.MatchLabels, s.Labels) {
				continue
			}
			for _, p := range s.Spec.Ports {
				if p.Name == ep.Port {
					scraped[name] = true
				}
			}
		}
	}
	if diff := cmp.Diff(sortedKeys(o.services), sortedKeys(scraped)); diff != "" {
		t.Errorf("Services the ServiceMonitor scrapes (-every Service +scraped):\n%s", diff)
	}
}

// rulesGroups reads the rule groups of every rules file in dir, in file
// name order (the order of the chart's .Files.Glob).
func rulesGroups(t *testing.T, dir string) []ruleGroup {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("rules files in %s: %v (%d)", dir, err, len(files))
	}
	sort.Strings(files)
	var groups []ruleGroup
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var file struct {
			Groups []ruleGroup `json:"groups"`
		}
		if err := decodeStrict(b, &file); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		groups = append(groups, file.Groups...)
	}
	return groups
}

// TestPrometheusRuleIsTheRulesFiles: the PrometheusRule holds exactly the
// groups of infra/prometheus/rules, which promtool checks and tests.
func TestPrometheusRuleIsTheRulesFiles(t *testing.T) {
	t.Parallel()
	o := renderCase(t, nil)
	if len(o.rules) != 1 {
		t.Fatalf("%d PrometheusRules, want 1", len(o.rules))
	}
	want := rulesGroups(t, rulesDir)
	if diff := cmp.Diff(want, o.rules[0].Spec.Groups); diff != "" {
		t.Errorf("PrometheusRule groups (-infra/prometheus/rules +chart):\n%s", diff)
	}
}

// TestPackagedChartRendersTheSame: `helm package` keeps everything the
// chart renders from (the rules copy under files/ included), so a chart
// pulled from a repository renders what this directory does.
func TestPackagedChartRendersTheSame(t *testing.T) {
	t.Parallel()
	archive, err := chartsave.Save(loadChart(t), t.TempDir())
	if err != nil {
		t.Fatalf("package: %v", err)
	}
	packaged, err := loader.Load(archive)
	if err != nil {
		t.Fatalf("load %s: %v", archive, err)
	}
	render := func(ch *chart.Chart) map[string]string {
		top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, nil,
			common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		out, err := engine.Render(ch, top)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := render(packaged)
	if !strings.Contains(got["tcs/templates/monitoring.yaml"], "alert: TCSReplicationStalled") {
		t.Errorf("packaged chart's PrometheusRule has no rules:\n%s", got["tcs/templates/monitoring.yaml"])
	}
	if diff := cmp.Diff(render(loadChart(t)), got); diff != "" {
		t.Errorf("packaged chart renders differently (-directory +package):\n%s", diff)
	}
}

// TestRulesCopyInSync: a chart cannot read files outside its folder, so it
// keeps a copy of infra/prometheus/rules; this fails when they differ.
func TestRulesCopyInSync(t *testing.T) {
	t.Parallel()
	copyDir := filepath.Join(chartDir, "files", "prometheus-rules")
	names := func(dir string) []string {
		files, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range files {
			files[i] = filepath.Base(f)
		}
		return files
	}
	fix := fmt.Sprintf("(refresh: rm %s/* && cp infra/prometheus/rules/*.yml infra/helm/%s/)", filepath.Join("infra/helm", copyDir), copyDir)
	if diff := cmp.Diff(names(rulesDir), names(copyDir)); diff != "" {
		t.Fatalf("rules files (-infra/prometheus/rules +chart copy) %s:\n%s", fix, diff)
	}
	for _, n := range names(rulesDir) {
		a, err := os.ReadFile(filepath.Join(rulesDir, n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(copyDir, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from infra/prometheus/rules/%s %s", filepath.Join(copyDir, n), n, fix)
		}
	}
}

// TestBadValues: values that cannot work fail the render with an error
// naming the value (from values.schema.json or the chart's own checks).
// TestHotKeysOff: lookup.hotKeys.enabled=false starts the nodes cold, with
// neither the flag nor the volume.
func TestHotKeysOff(t *testing.T) {
	t.Parallel()
	o := renderWith(t, nil, map[string]any{"lookup": map[string]any{"hotKeys": map[string]any{"enabled": false}}})
	d, ok := o.deployments["tcs-lookup-us-east-1"]
	if !ok {
		t.Fatalf("no lookup Deployment in %v", sortedKeys(o.deployments))
	}
	pod := d.Spec.Template.Spec
	for _, a := range pod.Containers[0].Args {
		if strings.HasPrefix(a, "--hot-keys-file") {
			t.Errorf("hotKeys off: arg %s", a)
		}
	}
	for _, v := range pod.Volumes {
		if v.Name == "hot-keys" {
			t.Errorf("hotKeys off: volume %+v", v)
		}
	}
}

func TestBadValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		overrides map[string]any
		want      string
	}{
		{"no home region", map[string]any{"aws": map[string]any{"homeRegion": ""}}, "aws.homeRegion is required"},
		{"bad prefix", map[string]any{"aws": map[string]any{"prefix": "TCS_prod"}}, `aws.prefix "TCS_prod"`},
		{"bad region", map[string]any{"regions": []any{map[string]any{"name": "europe"}}}, `'/regions/0/name': 'europe' does not match`},
		// values.schema.json: a misspelt key is an error, not a silent default.
		{"misspelt key", map[string]any{"lookup": map[string]any{"replcas": 3}}, "replcas"},
		{"misspelt region key", map[string]any{"regions": []any{map[string]any{"name": "eu-west-1", "lookups": map[string]any{}}}}, "lookups"},
		{"region resources without limits merge with the defaults", map[string]any{"regions": []any{map[string]any{"name": "eu-west-1", "lookup": map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "3"}}}}}}, ""},
		{"bad digest", map[string]any{"image": map[string]any{"digest": "latest"}}, "/image/digest"},
		{"no memory limit", map[string]any{"applier": map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": nil, "cpu": "1"}}}}, "memory"},
		{"region twice", map[string]any{"regions": []any{map[string]any{"name": "eu-west-1"}, map[string]any{"name": "eu-west-1"}}}, "regions: eu-west-1 is listed twice"},
		{"own fallback", map[string]any{"regions": []any{map[string]any{"name": "eu-west-1", "fallbackRegion": "eu-west-1"}}}, "eu-west-1 has itself as fallbackRegion"},
		{"no lookup TLS", map[string]any{"lookup": map[string]any{"tls": map[string]any{"secretName": ""}}}, "lookup.tls.secretName and lookup.credentials.secretName are both required"},
		{"no catalog credentials", map[string]any{"catalog": map[string]any{"credentials": map[string]any{"secretName": ""}}}, "catalog.tls.secretName and catalog.credentials.secretName are both required"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := renderChart(t, userValues(t, nil, c.overrides))
			if c.want == "" {
				if err != nil {
					t.Errorf("render: %v, want none", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("render: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the chart's binaries once for the package's tests.
func binaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: builds the binaries (tens of seconds on two cores)")
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "tcs-helm-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(filepath.Separator), "../../cmd/catalog", "../../cmd/streamer", "../../cmd/tcs")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestArgsAcceptedByBinaries runs every container's command, built from
// ./cmd, with its rendered arguments and environment followed by -h: the
// flag package parses them all in order, so a flag the binary does not
// define or a value it cannot parse fails before -h prints the usage.
// The environment includes GOMEMLIMIT as the kubelet would expand it,
// which the Go runtime refuses at start if malformed.
func TestArgsAcceptedByBinaries(t *testing.T) {
	t.Parallel()
	dir := binaries(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o := renderCase(t, c.files)
			for _, name := range sortedKeys(o.deployments) {
				ctr := o.deployments[name].Spec.Template.Spec.Containers[0]
				if len(ctr.Command) != 1 || !strings.HasPrefix(ctr.Command[0], "/usr/local/bin/") {
					t.Errorf("Deployment %s: command %q, want one of the image's /usr/local/bin binaries", name, ctr.Command)
					continue
				}
				bin := filepath.Join(dir, strings.TrimPrefix(ctr.Command[0], "/usr/local/bin/"))
				env, err := containerEnv(ctr)
				if err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(bin, append(slices.Clone(ctr.Args), "-h")...)
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
				for k, v := range env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				out, _ := cmd.CombinedOutput() // -h exits 2
				first, _, _ := strings.Cut(string(out), "\n")
				if !strings.HasPrefix(first, "Usage of ") {
					t.Errorf("Deployment %s: %s %q refused its arguments:\n%s", name, filepath.Base(bin), ctr.Args, out)
				}
			}
		})
	}
}

// TestArgsCheckCatchesBadFlags: the check above can fail.
func TestArgsCheckCatchesBadFlags(t *testing.T) {
	t.Parallel()
	dir := binaries(t)
	for _, args := range [][]string{{"--no-such-flag"}, {"--store-timeout=soon"}} {
		out, _ := exec.Command(filepath.Join(dir, "catalog"), append(args, "-h")...).CombinedOutput()
		if first, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(first, "Usage of ") {
			t.Errorf("catalog %q -h printed only the usage; the check would miss a bad flag", args)
		}
	}
	out, _ := exec.Command(filepath.Join(dir, "catalog"), "-h").CombinedOutput()
	if !strings.HasPrefix(string(out), "Usage of catalog") {
		t.Errorf("catalog -h printed %q, want the usage", out)
	}
}

// TestPropagationValues: every lookup node advertises its pod IP; with
// catalog.scanToken the catalog gets TCS_SCAN_TOKEN from the Secret and
// reaches the nodes over TLS with catalog.nodes' CA and server name, and
// without it neither the variable nor the flags.
func TestPropagationValues(t *testing.T) {
	t.Parallel()
	envOf := func(c corev1.Container) map[string]corev1.EnvVar {
		m := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			m[e.Name] = e
		}
		return m
	}
	o := renderWith(t, nil, nil)
	lookupEnv := envOf(o.deployments["tcs-lookup-us-east-1"].Spec.Template.Spec.Containers[0])
	if ip := lookupEnv["TCS_POD_IP"]; ip.ValueFrom == nil || ip.ValueFrom.FieldRef == nil || ip.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("lookup TCS_POD_IP: %+v, want status.podIP", ip)
	}
	if got := lookupEnv["TCS_ADVERTISE_ADDR"].Value; got != "$(TCS_POD_IP)" {
		t.Errorf("lookup TCS_ADVERTISE_ADDR %q, want $(TCS_POD_IP) (the port is --addr's)", got)
	}
	catalog := o.deployments["tcs-catalog"].Spec.Template.Spec.Containers[0]
	if _, ok := envOf(catalog)["TCS_SCAN_TOKEN"]; ok {
		t.Error("catalog has TCS_SCAN_TOKEN without catalog.scanToken")
	}
	for _, a := range catalog.Args {
		if strings.HasPrefix(a, "--nodes-") {
			t.Errorf("catalog arg %s without catalog.scanToken", a)
		}
	}

	o = renderWith(t, nil, map[string]any{"catalog": map[string]any{
		"scanToken": map[string]any{"secretName": "tcs-catalog-scan"},
		"nodes":     map[string]any{"caSecretName": "tcs-lookup-ca", "serverName": "tcs-lookup.tcs.svc"},
	}})
	pod := o.deployments["tcs-catalog"].Spec.Template.Spec
	catalog = pod.Containers[0]
	tok := envOf(catalog)["TCS_SCAN_TOKEN"]
	if tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil || tok.ValueFrom.SecretKeyRef.Name != "tcs-catalog-scan" || tok.ValueFrom.SecretKeyRef.Key != "token" {
		t.Errorf("catalog TCS_SCAN_TOKEN: %+v, want Secret tcs-catalog-scan key token", tok)
	}
	for _, want := range []string{"--nodes-ca-file=/etc/tcs/nodes-ca/ca.crt", "--nodes-server-name=tcs-lookup.tcs.svc"} {
		if !slices.Contains(catalog.Args, want) {
			t.Errorf("catalog args %q lack %s", catalog.Args, want)
		}
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == "tcs-lookup-ca" }) ||
		!slices.ContainsFunc(catalog.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/tcs/nodes-ca" }) {
		t.Errorf("catalog: no tcs-lookup-ca volume mounted at /etc/tcs/nodes-ca: %+v %+v", pod.Volumes, catalog.VolumeMounts)
	}
}
