package k8s_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are the deployable overlays, and whether each must run pushed,
// pinned images.
var overlays = []struct {
	dir  string
	prod bool
}{
	{"overlays/dev", false},
	{"overlays/prod", true},
}

// TestOverlays builds every overlay as kubectl kustomize does, decodes every
// object strictly, and checks every rule.
func TestOverlays(t *testing.T) {
	f := loadFacts(t)
	for _, o := range overlays {
		t.Run(o.dir, func(t *testing.T) {
			b, err := buildOverlay(filesys.MakeFsOnDisk(), o.dir)
			if err != nil {
				t.Fatal(err)
			}
			b.prod = o.prod
			if len(b.objects) < 20 {
				t.Fatalf("%d objects: the overlay lost most of the suite", len(b.objects))
			}
			r := check(b, f)
			for _, rule := range rules {
				for _, v := range r[rule] {
					t.Errorf("%s: %s", rule, v)
				}
			}
		})
	}
}

// brokenCases each break one rule in an overlay of their own, in memory,
// beside the real ones: the rule must see it.
var brokenCases = []struct {
	name, base string
	prod       bool
	// kustomization is appended to the overlay's kustomization.yaml.
	kustomization string
	rule          string
}{
	{
		name: "unknown field", base: "overlays/dev", rule: "decode",
		kustomization: patch("Deployment", "front", `{op: add, path: /spec/template/spec/containers/0/imagePullPolicyy, value: Always}`),
	},
	{
		name: "unknown field of a ScaledObject", base: "overlays/prod", prod: true, rule: "decode",
		kustomization: patch("ScaledObject", "matcher", `{op: add, path: /spec/minReplicas, value: 1}`),
	},
	{
		name: "KEDA metadata that is not a string", base: "overlays/prod", prod: true, rule: "decode",
		kustomization: patch("ScaledObject", "matcher", `{op: replace, path: /spec/triggers/0/metadata/useRegex, value: true}`),
	},
	{
		name: "unknown field of a RabbitmqCluster", base: "overlays/prod", prod: true, rule: "decode",
		kustomization: patch("RabbitmqCluster", "rabbitmq", `{op: add, path: /spec/persistance, value: {storage: 1Gi}}`),
	},
	{
		name: "no readiness probe", base: "overlays/prod", prod: true, rule: "probes",
		kustomization: patch("Deployment", "front", `{op: remove, path: /spec/template/spec/containers/0/readinessProbe}`),
	},
	{
		name: "liveness probe on another path", base: "overlays/dev", rule: "probes",
		kustomization: patch("Deployment", "matcher", `{op: replace, path: /spec/template/spec/containers/0/livenessProbe/httpGet/path, value: /healthz}`),
	},
	{
		name: "probes on a port the service does not listen on", base: "overlays/dev", rule: "probes",
		kustomization: patch("ConfigMap", "quickmatch", `{op: replace, path: /data/MM_HTTP_ADDR, value: ":9090"}`),
	},
	{
		name: "no requests", base: "overlays/prod", prod: true, rule: "requests",
		kustomization: patch("Deployment", "matcher", `{op: remove, path: /spec/template/spec/containers/0/resources/requests}`),
	},
	{
		name: "no requests on a backend", base: "overlays/prod", prod: true, rule: "requests",
		kustomization: patch("Redis", "redis", `{op: remove, path: /spec/kubernetesConfig/resources}`),
	},
	{
		name: "a variable no service reads", base: "overlays/dev", rule: "env",
		kustomization: patch("ConfigMap", "quickmatch", `{op: add, path: /data/MM_POLL_MAXIMUM, value: 30s}`),
	},
	{
		name: "a Secret nobody makes", base: "overlays/dev", rule: "env",
		kustomization: patch("Deployment", "assigner", `{op: replace, path: /spec/template/spec/containers/0/envFrom/1/secretRef/name, value: quickmatch-secrets}`),
	},
	{
		name: "auth off with a key", base: "overlays/dev", rule: "auth",
		kustomization: patch("ConfigMap", "quickmatch", `{op: add, path: /data/MM_AUTH, value: "off"}`),
	},
	{
		name: "no key and auth on", base: "overlays/dev", rule: "auth",
		kustomization: patch("Secret", "quickmatch-backends", `{op: remove, path: /data/MM_AUTH_HS256_SECRET}`),
	},
	{
		name: "a duration without a unit", base: "overlays/dev", rule: "config",
		kustomization: patch("ConfigMap", "quickmatch", `{op: replace, path: /data/MM_POLL_MAX, value: "50"}`),
	},
	{
		name: "a shutdown longer than the grace period", base: "overlays/prod", prod: true, rule: "grace",
		kustomization: patch("Deployment", "assigner", `{op: replace, path: /spec/template/spec/terminationGracePeriodSeconds, value: 25}`),
	},
	{
		name: "latest in prod", base: "overlays/prod", prod: true, rule: "images",
		kustomization: "images:\n  - {name: registry.example.com/quickmatch/front, newTag: latest}\n",
	},
	{
		name: "an unresolved image in prod", base: "overlays/dev", prod: true, rule: "images",
	},
	{
		name: "the wrong binary", base: "overlays/dev", rule: "images",
		kustomization: patch("Deployment", "front", `{op: replace, path: /spec/template/spec/containers/0/image, value: "ko://github.com/quickmatch/quickmatch/services/matcher"}`),
	},
	{
		name: "a backend image without a tag", base: "overlays/dev", rule: "images",
		kustomization: "images:\n  - {name: redis, newTag: latest}\n",
	},
	{
		name: "the queues file not mounted", base: "overlays/dev", rule: "queues",
		kustomization: patch("ConfigMap", "quickmatch", `{op: replace, path: /data/MM_QUEUES_FILE, value: /etc/quickmatch/rules.yaml}`),
	},
	{
		name: "a broken queues file", base: "overlays/dev", rule: "queues",
		kustomization: "configMapGenerator:\n  - {name: quickmatch-queues, behavior: replace, literals: [\"queues.yaml=queues: [{name: duel, teams: 1}]\"]}\n",
	},
	{
		name: "Redis not where the services look", base: "overlays/dev", rule: "backends",
		kustomization: patch("Service", "redis", `{op: replace, path: /spec/ports/0/port, value: 6380}`),
	},
	{
		name: "KEDA asking another namespace", base: "overlays/prod", prod: true, rule: "backends",
		kustomization: patch("ScaledObject", "assigner", `{op: replace, path: /spec/triggers/0/metadata/host, value: "http://rabbitmq.default.svc:15672/"}`),
	},
	{
		name: "KEDA in another vhost", base: "overlays/dev", rule: "backends",
		kustomization: patch("ScaledObject", "matcher", `{op: replace, path: /spec/triggers/0/metadata/vhostName, value: /}`),
	},
	{
		name: "a ticket queue no trigger watches", base: "overlays/prod", prod: true, rule: "autoscaling",
		kustomization: patch("ScaledObject", "matcher", `{op: replace, path: /spec/triggers/0/metadata/queueName, value: '^mm\.tickets\.duel$'}`),
	},
	{
		name: "retry queues counted", base: "overlays/prod", prod: true, rule: "autoscaling",
		kustomization: patch("ScaledObject", "matcher", `{op: replace, path: /spec/triggers/0/metadata/queueName, value: '^mm\.tickets\.'}`),
	},
	{
		name: "matchers scaled to zero", base: "overlays/dev", rule: "autoscaling",
		kustomization: patch("ScaledObject", "matcher", `{op: replace, path: /spec/minReplicaCount, value: 0}`),
	},
	{
		name: "a setting KEDA does not read", base: "overlays/prod", prod: true, rule: "autoscaling",
		kustomization: patch("ScaledObject", "assigner", `{op: add, path: /spec/triggers/0/metadata/queuename, value: mm.matches}`),
	},
	{
		name: "replicas beside an autoscaler", base: "overlays/dev", rule: "autoscaling",
		kustomization: patch("Deployment", "front", `{op: add, path: /spec/replicas, value: 3}`),
	},
	{
		name: "a Service that selects nothing", base: "overlays/prod", prod: true, rule: "selectors",
		kustomization: patch("Service", "front", `{op: replace, path: /spec/selector/app.kubernetes.io~1component, value: fronts}`),
	},
	{
		name: "an Ingress to a missing port", base: "overlays/prod", prod: true, rule: "selectors",
		kustomization: patch("Ingress", "quickmatch", `{op: replace, path: /spec/rules/0/http/paths/1/backend/service/port/name, value: https}`),
	},
	{
		name: "an alert on a metric nobody exports", base: "overlays/prod", prod: true, rule: "alerts",
		kustomization: patch("PrometheusRule", "quickmatch", `{op: replace, path: /spec/groups/0/rules/3/expr, value: 'sum(rate(mm_tickets_lost_total[5m])) > 0'}`),
	},
	{
		name: "an alert on a label the metric lacks", base: "overlays/prod", prod: true, rule: "alerts",
		kustomization: patch("PrometheusRule", "quickmatch", `{op: replace, path: /spec/groups/0/rules/4/expr, value: 'sum(rate(mm_assignments_total{region="eu"}[5m])) > 0'}`),
	},
}

// patch is a kustomization's patches entry of one JSON patch operation.
func patch(kind, name, op string) string {
	return "patches:\n  - target: {kind: " + kind + ", name: " + name + "}\n    patch: |\n      - " + op + "\n"
}

// TestRulesCatchViolations shows that the checks can fail: each broken
// overlay must break its rule, and every rule has a case.
func TestRulesCatchViolations(t *testing.T) {
	f := loadFacts(t)
	mem, err := diskTree()
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for i, c := range brokenCases {
		covered[c.rule] = true
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join("/k8s/broken", strings.Repeat("x", i+1))
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../" + c.base + "\n" + c.kustomization
			if err := mem.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k)); err != nil {
				t.Fatal(err)
			}
			b, err := buildOverlay(mem, dir)
			if err != nil {
				t.Fatal(err)
			}
			b.prod = c.prod
			r := check(b, f)
			if len(r[c.rule]) == 0 {
				t.Errorf("rule %s saw nothing wrong in:\n%s", c.rule, k)
			}
			for rule, vs := range r {
				for _, v := range vs {
					t.Logf("%s: %s", rule, v)
				}
			}
		})
	}
	for _, rule := range rules {
		if !covered[rule] {
			t.Errorf("no broken overlay shows that rule %s can fail", rule)
		}
	}
}

// TestQueuesCopy: the queue rules the cluster mounts are examples/queues.yaml.
func TestQueuesCopy(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(repoRoot, "examples", "queues.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("base", "queues.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("k8s/base/queues.yaml differs from examples/queues.yaml: copy it again (cp examples/queues.yaml k8s/base/)")
	}
}

// TestSecretExample: the documented Secret holds the backends and a key,
// each a variable the services read.
func TestSecretExample(t *testing.T) {
	f := loadFacts(t)
	for _, k := range []string{"MM_AMQP_URL", "MM_REDIS_ADDR", "MM_REDIS_PASSWORD", "MM_AUTH_HS256_SECRET"} {
		if _, ok := f.example.StringData[k]; !ok {
			t.Errorf("base/secret.example.yaml has no %s", k)
		}
	}
	for k := range f.example.StringData {
		if _, ok := f.vars[k]; !ok {
			t.Errorf("base/secret.example.yaml: %s is no variable of README.md's Configuration table", k)
		}
	}
	if f.example.Name != "quickmatch-backends" {
		t.Errorf("base/secret.example.yaml names %s, not the quickmatch-backends the services read", f.example.Name)
	}
}

// TestDocLinks: the operator's documents link only to files of this
// repository that exist.
func TestDocLinks(t *testing.T) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, doc := range []string{"README.md", filepath.Join(repoRoot, "docs", "operations.md")} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			abs, err := filepath.Abs(filepath.Join(filepath.Dir(doc), target))
			if err != nil {
				t.Fatal(err)
			}
			if rel, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links to %s, outside the repository", doc, m[1])
			} else if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, m[1])
			}
		}
	}
}

// TestBinariesLeaveManifestDepsOut: the modules these tests need (kustomize,
// the Kubernetes API, the Prometheus Operator's types) are in go.mod for the
// tests alone; no binary links them.
func TestBinariesLeaveManifestDepsOut(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./services/...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, prefix := range []string{"k8s.io/", "sigs.k8s.io/", "github.com/prometheus-operator/"} {
			if strings.HasPrefix(pkg, prefix) {
				t.Errorf("a binary of services/ links %s", pkg)
			}
		}
	}
}

// loadFacts reads what the rules check against from the repository.
func loadFacts(t *testing.T) *facts {
	t.Helper()
	f := &facts{tmp: t.TempDir()}
	var err error
	if f.vars, err = readConfigTable(filepath.Join(repoRoot, "README.md")); err != nil {
		t.Fatal(err)
	}
	if f.metrics, err = readMetrics(filepath.Join(repoRoot, "internal", "metrics", "metrics.go")); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join("base", "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	f.example = new(corev1.Secret)
	if err := decodeStrict(js, f.example); err != nil {
		t.Fatalf("base/secret.example.yaml: %v", err)
	}
	return f
}

var configRow = regexp.MustCompile("(?m)^\\| `(MM_[A-Z0-9_]+)` \\| ([^|]*) \\|")

// readConfigTable reads the variables of README.md's Configuration table
// with their defaults.
func readConfigTable(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vars := map[string]string{}
	for _, m := range configRow.FindAllStringSubmatch(string(data), -1) {
		def := strings.TrimSpace(m[2])
		if def == "(empty)" {
			def = ""
		}
		vars[m[1]] = strings.Trim(def, "`")
	}
	if len(vars) < 20 {
		return nil, fmt.Errorf("%s: found %d rows in the Configuration table; has its format changed?", path, len(vars))
	}
	return vars, nil
}

var metricDef = regexp.MustCompile(`(?s)prometheus\.New(Counter|Gauge|Histogram)Vec\(prometheus\.\w+Opts\{.*?Name:\s*"(\w+)".*?\},\s*\[\]string\{([^}]*)\}\)`)

// readMetrics reads the metrics internal/metrics registers, with their
// labels.
func readMetrics(path string) (map[string]metricInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]metricInfo{}
	for _, m := range metricDef.FindAllStringSubmatch(string(data), -1) {
		var ls []string
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
				ls = append(ls, l)
			}
		}
		out[m[2]] = metricInfo{kind: m[1], labels: ls}
	}
	if len(out) < 5 || !slices.ContainsFunc(slices.Collect(maps.Keys(out)), func(n string) bool { return strings.HasPrefix(n, "mm_") }) {
		return nil, fmt.Errorf("%s: found %d metrics; has its format changed?", path, len(out))
	}
	return out, nil
}
