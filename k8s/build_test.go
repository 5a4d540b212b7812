package k8s_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The tests run in k8s/; the repository's root is its parent.
const repoRoot = ".."

// kinds maps every kind an overlay may hold to the Go type it must decode
// into without an unknown or duplicate field. A kind missing here fails the
// build: nothing reaches a cluster unchecked.
var kinds = map[schema.GroupVersionKind]func() any{
	{Version: "v1", Kind: "Namespace"}:                                       func() any { return new(corev1.Namespace) },
	{Version: "v1", Kind: "ConfigMap"}:                                       func() any { return new(corev1.ConfigMap) },
	{Version: "v1", Kind: "Secret"}:                                          func() any { return new(corev1.Secret) },
	{Version: "v1", Kind: "Service"}:                                         func() any { return new(corev1.Service) },
	{Group: "apps", Version: "v1", Kind: "Deployment"}:                       func() any { return new(appsv1.Deployment) },
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}:                      func() any { return new(appsv1.StatefulSet) },
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"}:            func() any { return new(policyv1.PodDisruptionBudget) },
	{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}:       func() any { return new(networkingv1.NetworkPolicy) },
	{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"}:             func() any { return new(networkingv1.Ingress) },
	{Group: "autoscaling", Version: "v2", Kind: "HorizontalPodAutoscaler"}:   func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PodMonitor"}:      func() any { return new(monitoringv1.PodMonitor) },
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}:  func() any { return new(monitoringv1.PrometheusRule) },
	{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}:            func() any { return new(scaledObject) },
	{Group: "keda.sh", Version: "v1alpha1", Kind: "TriggerAuthentication"}:   func() any { return new(triggerAuthentication) },
	{Group: "rabbitmq.com", Version: "v1beta1", Kind: "RabbitmqCluster"}:     func() any { return new(rabbitmqCluster) },
	{Group: "redis.redis.opstreelabs.in", Version: "v1beta2", Kind: "Redis"}: func() any { return new(redisStandalone) },
}

// object is one object of a built overlay, decoded.
type object struct {
	gvk       schema.GroupVersionKind
	name      string
	namespace string
	raw       []byte // JSON, as kustomize emitted it
	typed     any    // *appsv1.Deployment, *scaledObject, ...
}

func (o *object) String() string { return o.gvk.Kind + "/" + o.name }

// built is an overlay after kustomize, with what failed to decode.
type built struct {
	overlay    string
	prod       bool // images must be pushed and pinned
	objects    []*object
	decodeErrs []string
}

// buildOverlay runs kustomize on dir of fsys, as kubectl kustomize does,
// and decodes every object strictly.
func buildOverlay(fsys filesys.FileSystem, dir string) (*built, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	b := &built{overlay: dir}
	for _, r := range m.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		g := r.GetGvk()
		o := &object{
			gvk:       schema.GroupVersionKind{Group: g.Group, Version: g.Version, Kind: g.Kind},
			name:      r.GetName(),
			namespace: r.GetNamespace(),
			raw:       raw,
		}
		newTyped, ok := kinds[o.gvk]
		if !ok {
			b.decodeErrs = append(b.decodeErrs, fmt.Sprintf("%s: %s is no kind this test knows how to check", o, o.gvk))
			continue
		}
		o.typed = newTyped()
		if err := decodeStrict(raw, o.typed); err != nil {
			b.decodeErrs = append(b.decodeErrs, fmt.Sprintf("%s: %v", o, err))
			continue
		}
		b.objects = append(b.objects, o)
	}
	return b, nil
}

// decodeStrict decodes JSON into v as the API server would with strict field
// validation: an unknown field, a field spelled in another case or a
// duplicate one is an error.
func decodeStrict(data []byte, v any) error {
	strict, err := sigsjson.UnmarshalStrict(data, v)
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

// of returns the objects of b of type T.
func of[T any](b *built) []T {
	var out []T
	for _, o := range b.objects {
		if t, ok := o.typed.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// diskTree copies the manifests under k8s/ into an in-memory file system at
// /k8s, where a test can add overlays of its own beside them.
func diskTree() (filesys.FileSystem, error) {
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(path)) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/k8s", path), data)
	})
	return mem, err
}
