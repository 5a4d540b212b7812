package k8s_test

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/quickmatch/quickmatch/contracts"
	"github.com/quickmatch/quickmatch/internal/queues"
	"github.com/quickmatch/quickmatch/services"
)

// facts are what the rules check the manifests against, read from the
// repository at test time.
type facts struct {
	// vars are the rows of README.md's "Configuration" table: every
	// variable a service reads, with its default ("" for "(empty)").
	vars map[string]string
	// metrics are those of internal/metrics/metrics.go, by name.
	metrics map[string]metricInfo
	// example is base/secret.example.yaml: the Secret an operator
	// creates for prod.
	example *corev1.Secret
	// tmp is a directory the config rule may write to.
	tmp string
}

type metricInfo struct {
	kind   string // Counter, Gauge, Histogram
	labels []string
}

// report collects the violations of each rule.
type report map[string][]string

func (r report) add(rule, format string, a ...any) {
	r[rule] = append(r[rule], fmt.Sprintf(format, a...))
}

// The rules, in the order they are reported.
var rules = []string{
	"decode", "probes", "requests", "env", "auth", "config", "grace", "images",
	"queues", "backends", "autoscaling", "selectors", "alerts",
}

// pod is a pod template of a built overlay, or the pods an operator makes
// for a custom resource.
type pod struct {
	owner     string // Deployment/front
	labels    map[string]string
	spec      *corev1.PodSpec // nil for an operator's pods
	ports     []corev1.ContainerPort
	suite     bool   // a front, matcher or assigner
	component string // front, matcher, assigner for the suite
	replicas  *int32
}

// service is a Service of a built overlay or one an operator makes.
type service struct {
	name     string
	selector map[string]string
	ports    []corev1.ServicePort
}

// world is a built overlay seen as the cluster would run it.
type world struct {
	b          *built
	f          *facts
	pods       []*pod
	services   []service
	configMaps map[string]map[string]string
	// secrets are the built Secrets, those the operators make and the
	// documented quickmatch-backends when the overlay leaves it to the
	// operator: name → keys → value.
	secrets map[string]map[string]string
}

func newWorld(b *built, f *facts) *world {
	w := &world{b: b, f: f, configMaps: map[string]map[string]string{}, secrets: map[string]map[string]string{}}
	for _, d := range of[*appsv1.Deployment](b) {
		p := &pod{owner: "Deployment/" + d.Name, labels: d.Spec.Template.Labels, spec: &d.Spec.Template.Spec, replicas: d.Spec.Replicas}
		if d.Spec.Template.Labels["app.kubernetes.io/name"] == "quickmatch" {
			p.suite, p.component = true, d.Spec.Template.Labels["app.kubernetes.io/component"]
		}
		w.pods = append(w.pods, p)
	}
	for _, s := range of[*appsv1.StatefulSet](b) {
		w.pods = append(w.pods, &pod{owner: "StatefulSet/" + s.Name, labels: s.Spec.Template.Labels, spec: &s.Spec.Template.Spec, replicas: s.Spec.Replicas})
	}
	for _, p := range w.pods {
		for _, c := range p.spec.Containers {
			p.ports = append(p.ports, c.Ports...)
		}
	}
	for _, s := range of[*corev1.Service](b) {
		w.services = append(w.services, service{name: s.Name, selector: s.Spec.Selector, ports: s.Spec.Ports})
	}
	for _, c := range of[*corev1.ConfigMap](b) {
		w.configMaps[c.Name] = c.Data
	}
	for _, s := range of[*corev1.Secret](b) {
		w.secrets[s.Name] = secretData(s)
	}
	// What the RabbitMQ Cluster Operator makes of a RabbitmqCluster N:
	// pods labelled app.kubernetes.io/name=N, the client Service N and the
	// Secret N-default-user.
	for _, r := range of[*rabbitmqCluster](b) {
		w.pods = append(w.pods, &pod{
			owner:  "RabbitmqCluster/" + r.Name,
			labels: map[string]string{"app.kubernetes.io/name": r.Name, "app.kubernetes.io/component": "rabbitmq", "app.kubernetes.io/part-of": "rabbitmq"},
			ports: []corev1.ContainerPort{
				{Name: "amqp", ContainerPort: 5672}, {Name: "management", ContainerPort: 15672},
				{Name: "prometheus", ContainerPort: 15692}, {Name: "epmd", ContainerPort: 4369},
				{Name: "cluster-links", ContainerPort: 25672},
			},
		})
		w.services = append(w.services, service{name: r.Name, selector: map[string]string{"app.kubernetes.io/name": r.Name}, ports: []corev1.ServicePort{
			{Name: "amqp", Port: 5672}, {Name: "management", Port: 15672}, {Name: "prometheus", Port: 15692},
		}})
		w.secrets[r.Name+"-default-user"] = map[string]string{
			"username": "(generated)", "password": "(generated)", "host": r.Name + "." + r.Namespace + ".svc", "port": "5672",
		}
	}
	// What the redis-operator makes of a standalone Redis N: the pod
	// labelled app=N and the Service N.
	for _, r := range of[*redisStandalone](b) {
		w.pods = append(w.pods, &pod{
			owner:  "Redis/" + r.Name,
			labels: map[string]string{"app": r.Name, "redis_setup_type": "standalone", "role": "standalone"},
			ports:  []corev1.ContainerPort{{Name: "redis-client", ContainerPort: 6379}},
		})
		w.services = append(w.services, service{name: r.Name, selector: map[string]string{"app": r.Name}, ports: []corev1.ServicePort{{Name: "redis-client", Port: 6379}}})
	}
	// The Secret an operator creates by hand, from the documented example.
	if _, ok := w.secrets[f.example.Name]; !ok {
		w.secrets[f.example.Name] = secretData(f.example)
	}
	return w
}

func secretData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	maps.Copy(out, s.StringData)
	return out
}

func (w *world) suite() []*pod {
	var out []*pod
	for _, p := range w.pods {
		if p.suite {
			out = append(out, p)
		}
	}
	return out
}

// containerEnv is the environment a container starts with: its envFrom
// sources, then its env, as the kubelet resolves them.
func (w *world) containerEnv(c *corev1.Container) (map[string]string, []string) {
	env := map[string]string{}
	var errs []string
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			data, ok := w.configMaps[from.ConfigMapRef.Name]
			if !ok && !ptrTrue(from.ConfigMapRef.Optional) {
				errs = append(errs, fmt.Sprintf("envFrom ConfigMap %s is not in the overlay", from.ConfigMapRef.Name))
			}
			for k, v := range data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			data, ok := w.secrets[from.SecretRef.Name]
			if !ok && !ptrTrue(from.SecretRef.Optional) {
				errs = append(errs, fmt.Sprintf("envFrom Secret %s is neither in the overlay nor documented", from.SecretRef.Name))
			}
			for k, v := range data {
				env[from.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := w.configMaps[ref.Name][ref.Key]
			if !ok && !ptrTrue(ref.Optional) {
				errs = append(errs, fmt.Sprintf("env %s: key %s of ConfigMap %s does not exist", e.Name, ref.Key, ref.Name))
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := w.secrets[ref.Name][ref.Key]
			if !ok && !ptrTrue(ref.Optional) {
				errs = append(errs, fmt.Sprintf("env %s: key %s of Secret %s does not exist", e.Name, ref.Key, ref.Name))
			}
			env[e.Name] = v
		default:
			env[e.Name] = "(from the pod)"
		}
	}
	return env, errs
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// setting is a variable's value in env, or its README default.
func (w *world) setting(env map[string]string, name string) string {
	if v, ok := env[name]; ok {
		return v
	}
	return w.f.vars[name]
}

// check runs every rule on b.
func check(b *built, f *facts) report {
	r := report{}
	for _, e := range b.decodeErrs {
		r.add("decode", "%s", e)
	}
	w := newWorld(b, f)
	w.checkProbes(r)
	w.checkRequests(r)
	w.checkEnv(r)
	w.checkConfig(r)
	w.checkGrace(r)
	w.checkImages(r)
	w.checkQueues(r)
	w.checkBackends(r)
	w.checkAutoscaling(r)
	w.checkSelectors(r)
	w.checkAlerts(r)
	return r
}

// probes: a service container probes /livez for liveness and /readyz for
// readiness on the port MM_HTTP_ADDR listens on; every other container has
// both probes of some kind.
func (w *world) checkProbes(r report) {
	for _, p := range w.pods {
		if p.spec == nil {
			continue
		}
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			where := p.owner + " container " + c.Name
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				r.add("probes", "%s: needs a liveness and a readiness probe", where)
				continue
			}
			if !p.suite {
				continue
			}
			env, _ := w.containerEnv(c)
			_, listen, err := net.SplitHostPort(w.setting(env, "MM_HTTP_ADDR"))
			if err != nil {
				r.add("probes", "%s: MM_HTTP_ADDR: %v", where, err)
			}
			for _, pr := range []struct {
				kind, path string
				probe      *corev1.Probe
			}{{"liveness", "/livez", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
				get := pr.probe.HTTPGet
				if get == nil || get.Path != pr.path {
					r.add("probes", "%s: the %s probe must be an HTTP GET of %s", where, pr.kind, pr.path)
					continue
				}
				if port, ok := containerPort(c, get.Port); !ok || strconv.Itoa(int(port)) != listen {
					r.add("probes", "%s: the %s probe's port %s is not the one MM_HTTP_ADDR listens on (%s)", where, pr.kind, get.Port.String(), listen)
				}
			}
		}
	}
}

func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// requests: every container, and every operator's pods, request CPU and
// memory, so the scheduler places them and the CPU autoscalers have a base.
func (w *world) checkRequests(r report) {
	need := func(where string, res *corev1.ResourceRequirements) {
		if res == nil || res.Requests.Cpu().IsZero() || res.Requests.Memory().IsZero() {
			r.add("requests", "%s: requests no CPU or no memory", where)
		}
	}
	for _, p := range w.pods {
		if p.spec == nil {
			continue
		}
		for i := range p.spec.InitContainers {
			need(p.owner+" init container "+p.spec.InitContainers[i].Name, &p.spec.InitContainers[i].Resources)
		}
		for i := range p.spec.Containers {
			need(p.owner+" container "+p.spec.Containers[i].Name, &p.spec.Containers[i].Resources)
		}
	}
	for _, c := range of[*rabbitmqCluster](w.b) {
		need("RabbitmqCluster/"+c.Name, c.Spec.Resources)
	}
	for _, c := range of[*redisStandalone](w.b) {
		need("Redis/"+c.Name, c.Spec.KubernetesConfig.Resources)
	}
}

// keys are the variables that give the services a key to verify tokens.
var keys = []string{"MM_AUTH_HS256_SECRET", "MM_AUTH_JWKS_FILE", "MM_AUTH_JWKS_URL"}

// env: every variable a service container is given is one README.md's
// Configuration table lists, and every source resolves. auth: the services
// start only with a key, or with MM_AUTH=off and none (services/auth.go).
func (w *world) checkEnv(r report) {
	for _, p := range w.suite() {
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			where := p.owner + " container " + c.Name
			env, errs := w.containerEnv(c)
			for _, e := range errs {
				r.add("env", "%s: %s", where, e)
			}
			for _, name := range slices.Sorted(maps.Keys(env)) {
				if _, ok := w.f.vars[name]; !ok {
					r.add("env", "%s: sets %s, which README.md's Configuration table does not list", where, name)
				}
			}
			haveKey := slices.ContainsFunc(keys, func(k string) bool { return env[k] != "" })
			switch off := env["MM_AUTH"] == "off"; {
			case off && haveKey:
				r.add("auth", "%s: MM_AUTH=off with a key set: the service refuses to start", where)
			case !off && !haveKey:
				r.add("auth", "%s: no key (%s) and no MM_AUTH=off: the service refuses to start", where, strings.Join(keys, ", "))
			}
		}
	}
}

// config: services.LoadConfig, which every service starts with, accepts
// each service container's environment (durations, numbers, queue type,
// regions, the queues file).
func (w *world) checkConfig(r report) {
	for _, p := range w.suite() {
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			env, _ := w.containerEnv(c)
			if file := env["MM_QUEUES_FILE"]; file != "" {
				// The file as the pod sees it; the queues rule checks the mount.
				data, ok := w.mounted(p, c, file)
				if !ok {
					continue
				}
				local := filepath.Join(w.f.tmp, strings.ReplaceAll(p.owner, "/", "-")+"-"+filepath.Base(file))
				if err := os.WriteFile(local, []byte(data), 0o600); err != nil {
					r.add("config", "%s: %v", p.owner, err)
					continue
				}
				env["MM_QUEUES_FILE"] = local
			}
			if err := withEnv(env, func() error { _, err := services.LoadConfig(); return err }); err != nil {
				r.add("config", "%s container %s: the service would not start: %v", p.owner, c.Name, err)
			}
		}
	}
}

// withEnv runs fn with the MM_* variables of the process replaced by env.
// The tests that call it do not run in parallel.
func withEnv(env map[string]string, fn func() error) error {
	saved := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "MM_") {
			saved[k] = v
			os.Unsetenv(k)
		}
	}
	defer func() {
		for k := range env {
			os.Unsetenv(k)
		}
		for k, v := range saved {
			os.Setenv(k, v)
		}
	}()
	for k, v := range env {
		os.Setenv(k, v)
	}
	return fn()
}

// grace: the kubelet waits longer than MM_DRAIN_DELAY + MM_SHUTDOWN_TIMEOUT
// before it kills a service container, so that a shutdown always finishes.
func (w *world) checkGrace(r report) {
	for _, p := range w.suite() {
		grace := 30 * time.Second // the API's default
		if s := p.spec.TerminationGracePeriodSeconds; s != nil {
			grace = time.Duration(*s) * time.Second
		}
		for i := range p.spec.Containers {
			env, _ := w.containerEnv(&p.spec.Containers[i])
			drain, err1 := time.ParseDuration(w.setting(env, "MM_DRAIN_DELAY"))
			shutdown, err2 := time.ParseDuration(w.setting(env, "MM_SHUTDOWN_TIMEOUT"))
			if err1 != nil || err2 != nil {
				r.add("grace", "%s: MM_DRAIN_DELAY or MM_SHUTDOWN_TIMEOUT is no duration", p.owner)
				continue
			}
			if grace <= drain+shutdown {
				r.add("grace", "%s: terminationGracePeriodSeconds %s does not exceed MM_DRAIN_DELAY %s + MM_SHUTDOWN_TIMEOUT %s", p.owner, grace, drain, shutdown)
			}
		}
	}
}

const koPrefix = "ko://github.com/quickmatch/quickmatch/"

// images: no image is latest (named or implied); a service runs the image of
// its own binary. In dev a service's image is a ko:// reference to a main
// package of this module, which ko resolve builds; in prod it is a pushed
// image, pinned by tag or digest.
func (w *world) checkImages(r report) {
	prod := w.b.prod
	type img struct{ where, ref, component string }
	var all []img
	for _, p := range w.pods {
		if p.spec == nil {
			continue
		}
		for _, c := range slices.Concat(p.spec.InitContainers, p.spec.Containers) {
			i := img{where: p.owner + " container " + c.Name, ref: c.Image}
			if p.suite {
				i.component = p.component
			}
			all = append(all, i)
		}
	}
	for _, c := range of[*rabbitmqCluster](w.b) {
		all = append(all, img{where: "RabbitmqCluster/" + c.Name, ref: c.Spec.Image})
	}
	for _, c := range of[*redisStandalone](w.b) {
		all = append(all, img{where: "Redis/" + c.Name, ref: c.Spec.KubernetesConfig.Image})
	}
	for _, i := range all {
		if pkg, ok := strings.CutPrefix(i.ref, koPrefix); ok {
			switch {
			case prod:
				r.add("images", "%s: %s is not resolved: prod runs pinned, pushed images", i.where, i.ref)
			case i.component == "" || pkg != "services/"+i.component:
				r.add("images", "%s: %s is not the binary of its component %q", i.where, i.ref, i.component)
			default:
				if err := isMainPackage(filepath.Join(repoRoot, pkg)); err != nil {
					r.add("images", "%s: %s: %v", i.where, i.ref, err)
				}
			}
			continue
		}
		if strings.HasPrefix(i.ref, "ko://") {
			r.add("images", "%s: %s is not a package of this module", i.where, i.ref)
			continue
		}
		repo, tag, digest := splitImage(i.ref)
		switch {
		case i.ref == "":
			r.add("images", "%s: no image", i.where)
		case digest == "" && (tag == "" || tag == "latest"):
			r.add("images", "%s: %s is not pinned: give a tag other than latest, or a digest", i.where, i.ref)
		case i.component != "" && pathBase(repo) != i.component:
			r.add("images", "%s: %s is not the image of %s", i.where, i.ref, i.component)
		}
	}
}

// splitImage splits name[:tag][@digest].
func splitImage(ref string) (repo, tag, digest string) {
	ref, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:], digest
	}
	return ref, "", digest
}

func pathBase(repo string) string { return repo[strings.LastIndex(repo, "/")+1:] }

// isMainPackage reports whether dir holds a Go command.
func isMainPackage(dir string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if regexp.MustCompile(`(?m)^package main$`).Match(data) {
			return nil
		}
	}
	return fmt.Errorf("%s is no main package of this module", dir)
}

// mounted is the content of file as container c of p sees it through a
// ConfigMap volume, and whether it does.
func (w *world) mounted(p *pod, c *corev1.Container, file string) (string, bool) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		rel = filepath.Join(m.SubPath, rel)
		for _, v := range p.spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			key := rel
			for _, item := range v.ConfigMap.Items {
				if item.Path == rel {
					key = item.Key
				}
			}
			data, ok := w.configMaps[v.ConfigMap.Name][key]
			return data, ok
		}
	}
	return "", false
}

// queues: MM_QUEUES_FILE is a file of a mounted ConfigMap, and the rules in
// it load, so that the cluster offers the queues of the file and not the
// built-in duel alone.
func (w *world) checkQueues(r report) {
	for _, p := range w.suite() {
		for i := range p.spec.Containers {
			c := &p.spec.Containers[i]
			env, _ := w.containerEnv(c)
			file := env["MM_QUEUES_FILE"]
			if file == "" {
				r.add("queues", "%s: MM_QUEUES_FILE is not set: only the built-in duel would be offered", p.owner)
				continue
			}
			data, ok := w.mounted(p, c, file)
			if !ok {
				r.add("queues", "%s: MM_QUEUES_FILE %s is no key of a ConfigMap mounted in container %s", p.owner, file, c.Name)
				continue
			}
			if _, err := queues.Parse([]byte(data)); err != nil {
				r.add("queues", "%s: %s: %v", p.owner, file, err)
			}
		}
	}
}

// queueNames are the queues the matchers of w consume, from the file they
// mount.
func (w *world) queueNames() []string {
	for _, p := range w.suite() {
		if p.component != "matcher" {
			continue
		}
		c := &p.spec.Containers[0]
		env, _ := w.containerEnv(c)
		data, ok := w.mounted(p, c, env["MM_QUEUES_FILE"])
		if !ok {
			return nil
		}
		set, err := queues.Parse([]byte(data))
		if err != nil {
			return nil
		}
		return set.Names()
	}
	return nil
}

// prefix is the broker prefix the suite's containers use.
func (w *world) prefix() string {
	for _, p := range w.suite() {
		env, _ := w.containerEnv(&p.spec.Containers[0])
		return w.setting(env, "MM_AMQP_PREFIX")
	}
	return w.f.vars["MM_AMQP_PREFIX"]
}

// backends: the broker and store addresses the services are given, and the
// host KEDA reads queue depths from, name a Service of the overlay (or one
// an operator makes) with that port.
func (w *world) checkBackends(r report) {
	vhosts := map[string]bool{} // of the services' MM_AMQP_URL
	for _, p := range w.suite() {
		env, _ := w.containerEnv(&p.spec.Containers[0])
		if u, err := url.Parse(env["MM_AMQP_URL"]); err != nil || u.Scheme != "amqp" && u.Scheme != "amqps" {
			r.add("backends", "%s: MM_AMQP_URL %q is no amqp:// URL", p.owner, env["MM_AMQP_URL"])
		} else {
			if err := w.resolves(u.Host, "5672"); err != nil {
				r.add("backends", "%s: MM_AMQP_URL: %v", p.owner, err)
			}
			vhosts[cmp.Or(strings.TrimPrefix(u.Path, "/"), "/")] = true
		}
		if err := w.resolves(env["MM_REDIS_ADDR"], ""); err != nil {
			r.add("backends", "%s: MM_REDIS_ADDR: %v", p.owner, err)
		}
	}
	for _, so := range of[*scaledObject](w.b) {
		for _, t := range so.Spec.Triggers {
			if t.Type != "rabbitmq" {
				continue
			}
			if u, err := url.Parse(t.Metadata["host"]); err != nil || u.Host == "" {
				r.add("backends", "ScaledObject/%s: trigger %s: host %q is no URL", so.Name, t.Name, t.Metadata["host"])
			} else if err := w.resolves(u.Host, ""); err != nil {
				r.add("backends", "ScaledObject/%s: trigger %s: %v", so.Name, t.Name, err)
			}
			if v := cmp.Or(t.Metadata["vhostName"], "/"); !vhosts[v] {
				r.add("backends", "ScaledObject/%s: trigger %s reads the vhost %s, where the services have no queue (%v)", so.Name, t.Name, v, slices.Sorted(maps.Keys(vhosts)))
			}
		}
	}
}

// resolves checks that host:port names a Service of the namespace: its name
// alone, or name.namespace.svc[.cluster.local].
func (w *world) resolves(hostport, defaultPort string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		if defaultPort == "" {
			return fmt.Errorf("%q is no host:port", hostport)
		}
		host, port = hostport, defaultPort
	}
	name := host
	if n, rest, ok := strings.Cut(host, "."); ok {
		if rest != "quickmatch.svc" && rest != "quickmatch.svc.cluster.local" {
			return fmt.Errorf("%s is not a Service of the namespace quickmatch", host)
		}
		name = n
	}
	for _, s := range w.services {
		if s.name != name {
			continue
		}
		for _, sp := range s.ports {
			if strconv.Itoa(int(sp.Port)) == port {
				return nil
			}
		}
		return fmt.Errorf("Service %s has no port %s", name, port)
	}
	return fmt.Errorf("no Service %s", name)
}

// autoscaling: every autoscaler targets a Deployment of the overlay, which
// leaves its replica count to it and has no second autoscaler; the matchers
// scale on the ready depth of every ticket queue and never below one (their
// reapers), the assigners on the match queue; trigger settings are ones KEDA
// reads, and their credentials exist.
func (w *world) checkAutoscaling(r report) {
	deployments := map[string]*appsv1.Deployment{}
	for _, d := range of[*appsv1.Deployment](w.b) {
		deployments[d.Name] = d
	}
	targets := map[string][]string{}
	target := func(by, kind, name string) {
		if kind != "" && kind != "Deployment" || deployments[name] == nil {
			r.add("autoscaling", "%s: targets %s %s, which is not a Deployment of the overlay", by, cmp.Or(kind, "Deployment"), name)
			return
		}
		targets[name] = append(targets[name], by)
		if deployments[name].Spec.Replicas != nil {
			r.add("autoscaling", "Deployment/%s sets replicas although %s scales it: every apply would undo the autoscaler", name, by)
		}
	}
	for _, h := range of[*autoscalingv2.HorizontalPodAutoscaler](w.b) {
		target("HorizontalPodAutoscaler/"+h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
	}
	auths := map[string]*triggerAuthentication{}
	for _, a := range of[*triggerAuthentication](w.b) {
		auths[a.Name] = a
		for _, ref := range a.Spec.SecretTargetRef {
			if _, ok := w.secrets[ref.Name][ref.Key]; !ok {
				r.add("autoscaling", "TriggerAuthentication/%s: Secret %s has no key %s", a.Name, ref.Name, ref.Key)
			}
		}
	}
	prefix := w.prefix()
	for _, so := range of[*scaledObject](w.b) {
		by := "ScaledObject/" + so.Name
		if so.Spec.ScaleTargetRef == nil {
			r.add("autoscaling", "%s: no scaleTargetRef", by)
			continue
		}
		name := so.Spec.ScaleTargetRef.Name
		target(by, so.Spec.ScaleTargetRef.Kind, name)
		if name == "matcher" && (so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1) {
			r.add("autoscaling", "%s: minReplicaCount must be at least 1: the matchers' reapers repair what dead processes leave", by)
		}
		var watched []string // queues the triggers watch
		for _, t := range so.Spec.Triggers {
			where := by + " trigger " + cmp.Or(t.Name, t.Type)
			if t.AuthenticationRef != nil && auths[t.AuthenticationRef.Name] == nil {
				r.add("autoscaling", "%s: no TriggerAuthentication %s", where, t.AuthenticationRef.Name)
			}
			switch t.Type {
			case "cpu":
				checkKeys(r, where, t.Metadata, cpuScalerKeys)
				if t.MetricType != autoscalingv2.UtilizationMetricType {
					r.add("autoscaling", "%s: metricType must be Utilization", where)
				}
			case "rabbitmq":
				checkKeys(r, where, t.Metadata, rabbitmqScalerKeys)
				watched = append(watched, w.checkRabbitTrigger(r, where, t.Metadata)...)
			default:
				r.add("autoscaling", "%s: trigger type %s is not one these manifests use", where, t.Type)
			}
		}
		var want []string
		switch name {
		case "matcher":
			for _, q := range w.queueNames() {
				want = append(want, prefix+contracts.TicketQueue(q))
			}
		case "assigner":
			want = []string{prefix + contracts.MatchQueue}
		}
		for _, q := range want {
			if !slices.Contains(watched, q) {
				r.add("autoscaling", "%s: no trigger watches the queue %s", by, q)
			}
		}
	}
	for name, by := range targets {
		if len(by) > 1 {
			r.add("autoscaling", "Deployment/%s has more than one autoscaler: %s", name, strings.Join(by, ", "))
		}
	}
}

func checkKeys(r report, where string, md map[string]string, known []string) {
	for _, k := range slices.Sorted(maps.Keys(md)) {
		if !slices.Contains(known, k) {
			r.add("autoscaling", "%s: KEDA reads no setting %q", where, k)
		}
	}
}

// checkRabbitTrigger checks a rabbitmq trigger's settings as KEDA's scaler
// validates them, and answers which of the suite's queues it watches.
func (w *world) checkRabbitTrigger(r report, where string, md map[string]string) []string {
	bad := func(format string, a ...any) { r.add("autoscaling", where+": "+format, a...) }
	protocol := cmp.Or(md["protocol"], "auto")
	if protocol == "auto" {
		if u, err := url.Parse(md["host"]); err == nil {
			protocol = map[string]string{"http": "http", "https": "http", "amqp": "amqp", "amqps": "amqp"}[u.Scheme]
		}
	}
	if protocol != "http" && protocol != "amqp" {
		bad("protocol %q is neither http nor amqp", md["protocol"])
	}
	flag := func(k string) bool {
		v, ok := md[k]
		if !ok {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("%s %q is no boolean", k, v)
		}
		if b && protocol != "http" {
			bad("%s needs protocol http", k)
		}
		return b
	}
	useRegex := flag("useRegex")
	flag("excludeUnacknowledged")
	if md["mode"] != "QueueLength" {
		bad("mode %q: these manifests scale on QueueLength", md["mode"])
	}
	if v, err := strconv.ParseFloat(md["value"], 64); err != nil || v <= 0 {
		bad("value %q is no positive number", md["value"])
	}
	if op, ok := md["operation"]; ok && !slices.Contains([]string{"sum", "avg", "max"}, op) {
		bad("operation %q is none of sum, avg, max", op)
	}
	// The broker's queues, to see which the trigger takes.
	all := []string{w.prefix() + contracts.MatchQueue, w.prefix() + contracts.DeadLetterQueue,
		w.prefix() + contracts.MatchQueue + contracts.RetrySuffix}
	for _, q := range w.queueNames() {
		all = append(all, w.prefix()+contracts.TicketQueue(q), w.prefix()+contracts.TicketQueue(q)+contracts.RetrySuffix)
	}
	if !useRegex {
		return []string{md["queueName"]}
	}
	re, err := regexp.Compile(md["queueName"])
	if err != nil {
		bad("queueName: %v", err)
		return nil
	}
	var watched []string
	for _, q := range all {
		if re.MatchString(q) {
			watched = append(watched, q)
			if strings.HasSuffix(q, contracts.RetrySuffix) || strings.HasSuffix(q, contracts.DeadLetterQueue) {
				bad("queueName %s also takes %s, whose messages no consumer can take yet", md["queueName"], q)
			}
		}
	}
	return watched
}

// selectors: every Service, PodDisruptionBudget, NetworkPolicy and PodMonitor
// selects pods of the overlay, on ports they have; every Ingress backend is
// a Service port.
func (w *world) checkSelectors(r report) {
	selected := func(sel labels.Selector) []*pod {
		var out []*pod
		for _, p := range w.pods {
			if sel.Matches(labels.Set(p.labels)) {
				out = append(out, p)
			}
		}
		return out
	}
	fromLabelSelector := func(where string, ls *metav1.LabelSelector) []*pod {
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			r.add("selectors", "%s: %v", where, err)
			return nil
		}
		ps := selected(sel)
		if len(ps) == 0 {
			r.add("selectors", "%s selects no pod", where)
		}
		return ps
	}
	hasPort := func(ps []*pod, port intstr.IntOrString) bool {
		for _, p := range ps {
			for _, cp := range p.ports {
				if port.Type == intstr.String && cp.Name == port.StrVal || port.Type == intstr.Int && cp.ContainerPort == port.IntVal {
					return true
				}
			}
		}
		return false
	}
	for _, s := range of[*corev1.Service](w.b) {
		where := "Service/" + s.Name
		ps := selected(labels.SelectorFromSet(s.Spec.Selector))
		if len(s.Spec.Selector) == 0 || len(ps) == 0 {
			r.add("selectors", "%s selects no pod", where)
			continue
		}
		for _, sp := range s.Spec.Ports {
			if !hasPort(ps, sp.TargetPort) {
				r.add("selectors", "%s: no selected pod has the port %s", where, sp.TargetPort.String())
			}
		}
	}
	for _, pdb := range of[*policyv1.PodDisruptionBudget](w.b) {
		fromLabelSelector("PodDisruptionBudget/"+pdb.Name, pdb.Spec.Selector)
	}
	for _, np := range of[*networkingv1.NetworkPolicy](w.b) {
		where := "NetworkPolicy/" + np.Name
		ps := fromLabelSelector(where, &np.Spec.PodSelector)
		for _, in := range np.Spec.Ingress {
			for _, port := range in.Ports {
				if port.Port != nil && !hasPort(ps, *port.Port) {
					r.add("selectors", "%s: no selected pod has the port %s", where, port.Port.String())
				}
			}
			for _, peer := range in.From {
				if peer.PodSelector != nil && peer.NamespaceSelector == nil {
					fromLabelSelector(where+" (from)", peer.PodSelector)
				}
			}
		}
	}
	for _, pm := range of[*monitoringv1.PodMonitor](w.b) {
		where := "PodMonitor/" + pm.Name
		ps := fromLabelSelector(where, &pm.Spec.Selector)
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if ep.Port != nil && !hasPort(ps, intstr.FromString(*ep.Port)) {
				r.add("selectors", "%s: no selected pod has the port %s", where, *ep.Port)
			}
		}
	}
	services := map[string]*corev1.Service{}
	for _, s := range of[*corev1.Service](w.b) {
		services[s.Name] = s
	}
	for _, in := range of[*networkingv1.Ingress](w.b) {
		for _, rule := range in.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, path := range rule.HTTP.Paths {
				be := path.Backend.Service
				if be == nil {
					continue
				}
				s := services[be.Name]
				if s == nil || !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool {
					return be.Port.Name != "" && sp.Name == be.Port.Name || be.Port.Number != 0 && sp.Port == be.Port.Number
				}) {
					port := be.Port.Name
					if port == "" {
						port = strconv.Itoa(int(be.Port.Number))
					}
					r.add("selectors", "Ingress/%s: path %s goes to port %s of Service %s, which does not exist", in.Name, path.Path, port, be.Name)
				}
			}
		}
	}
}

var (
	metricRef   = regexp.MustCompile(`\b(mm_[a-z0-9_]+)\b(\{[^}]*\})?`)
	labelRef    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	scrapeAdded = []string{"namespace", "pod", "container", "instance", "job", "endpoint"}
)

// alerts: every metric an alert reads is one the services register, and
// every label it matches on is one of that metric's (or one the scrape
// adds).
func (w *world) checkAlerts(r report) {
	for _, pr := range of[*monitoringv1.PrometheusRule](w.b) {
		for _, g := range pr.Spec.Groups {
			for _, rule := range g.Rules {
				where := "PrometheusRule/" + pr.Name + " " + cmp.Or(rule.Alert, rule.Record)
				expr := rule.Expr.String()
				for _, m := range metricRef.FindAllStringSubmatch(expr, -1) {
					name, info, ok := w.metric(m[1])
					if !ok {
						r.add("alerts", "%s: no service exports %s", where, m[1])
						continue
					}
					for _, l := range labelRef.FindAllStringSubmatch(m[2], -1) {
						known := slices.Concat(info.labels, scrapeAdded)
						if strings.HasSuffix(m[1], "_bucket") {
							known = append(known, "le")
						}
						if !slices.Contains(known, l[1]) {
							r.add("alerts", "%s: %s has no label %s", where, name, l[1])
						}
					}
				}
			}
		}
	}
}

// metric finds the metric a series name belongs to: itself, or the
// histogram whose _bucket, _sum or _count it is.
func (w *world) metric(series string) (string, metricInfo, bool) {
	if info, ok := w.f.metrics[series]; ok && info.kind != "Histogram" {
		return series, info, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok {
			if info, ok := w.f.metrics[base]; ok && info.kind == "Histogram" {
				return base, info, true
			}
		}
	}
	return "", metricInfo{}, false
}
