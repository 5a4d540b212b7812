package k8s_test

// Mirrors of the custom resources whose operators' Go API types the module
// proxy does not serve, or serves only with requirements that would change
// the binaries' own dependencies (KEDA's module requires newer go-redis,
// amqp091-go and client_golang than the services use). Each mirrors the
// schema of the version named, field by field, for the fields an overlay
// here uses and their neighbours; a strict decode into it rejects a
// misspelt or misplaced field as the API server would. A valid field that
// is missing here fails the test too: add it, from the operator's API
// reference, when an overlay starts to use it.

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KEDA v2.21 (keda.sh/v1alpha1), apis/keda/v1alpha1.

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        *kedaScaleTarget `json:"scaleTargetRef"`
	PollingInterval       *int32           `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32           `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32           `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32           `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32           `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32           `json:"maxReplicaCount,omitempty"`
	Advanced              *kedaAdvanced    `json:"advanced,omitempty"`
	Triggers              []kedaTrigger    `json:"triggers"`
	Fallback              *kedaFallback    `json:"fallback,omitempty"`
}

type kedaScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type kedaAdvanced struct {
	HorizontalPodAutoscalerConfig *kedaHPAConfig        `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool                  `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *kedaScalingModifiers `json:"scalingModifiers,omitempty"`
}

type kedaHPAConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type kedaScalingModifiers struct {
	Formula          string                         `json:"formula,omitempty"`
	Target           string                         `json:"target,omitempty"`
	ActivationTarget string                         `json:"activationTarget,omitempty"`
	MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type kedaTrigger struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *kedaAuthRef                   `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type kedaAuthRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

type kedaFallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              triggerAuthenticationSpec `json:"spec"`
}

type triggerAuthenticationSpec struct {
	SecretTargetRef    []kedaTargetRef `json:"secretTargetRef,omitempty"`
	ConfigMapTargetRef []kedaTargetRef `json:"configMapTargetRef,omitempty"`
	Env                []kedaEnv       `json:"env,omitempty"`
	FilePath           string          `json:"filePath,omitempty"`
}

type kedaTargetRef struct {
	Parameter string `json:"parameter"`
	Name      string `json:"name"`
	Key       string `json:"key"`
}

type kedaEnv struct {
	Parameter     string `json:"parameter"`
	Name          string `json:"name"`
	ContainerName string `json:"containerName,omitempty"`
}

// rabbitmqScalerKeys are the trigger metadata keys KEDA v2.21's rabbitmq
// scaler reads (pkg/scalers/rabbitmq_scaler.go); an unknown key is ignored
// there, so a typo would silently change the scaling.
var rabbitmqScalerKeys = []string{
	"queueName", "mode", "queueLength", "value", "activationValue", "host", "hostFromEnv",
	"protocol", "vhostName", "useRegex", "excludeUnacknowledged", "pageSize", "operation",
	"timeout", "unsafeSsl",
}

// cpuScalerKeys are those of its cpu scaler.
var cpuScalerKeys = []string{"value", "containerName", "type"}

// RabbitMQ Cluster Operator v2 (rabbitmq.com/v1beta1), api/v1beta1.

type rabbitmqCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              rabbitmqClusterSpec `json:"spec,omitempty"`
}

type rabbitmqClusterSpec struct {
	Replicas                      *int32                        `json:"replicas"`
	Image                         string                        `json:"image,omitempty"`
	ImagePullSecrets              []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	Service                       *rabbitmqService              `json:"service,omitempty"`
	Persistence                   *rabbitmqPersistence          `json:"persistence,omitempty"`
	Resources                     *corev1.ResourceRequirements  `json:"resources,omitempty"`
	Affinity                      *corev1.Affinity              `json:"affinity,omitempty"`
	Tolerations                   []corev1.Toleration           `json:"tolerations,omitempty"`
	Rabbitmq                      *rabbitmqConfiguration        `json:"rabbitmq,omitempty"`
	TLS                           *rabbitmqTLS                  `json:"tls,omitempty"`
	SkipPostDeploySteps           bool                          `json:"skipPostDeploySteps,omitempty"`
	TerminationGracePeriodSeconds *int64                        `json:"terminationGracePeriodSeconds,omitempty"`
	DelayStartSeconds             *int32                        `json:"delayStartSeconds,omitempty"`
}

type rabbitmqService struct {
	Type        corev1.ServiceType `json:"type,omitempty"`
	Annotations map[string]string  `json:"annotations,omitempty"`
}

type rabbitmqPersistence struct {
	StorageClassName *string            `json:"storageClassName,omitempty"`
	Storage          *resource.Quantity `json:"storage,omitempty"`
}

type rabbitmqConfiguration struct {
	AdditionalPlugins []string `json:"additionalPlugins,omitempty"`
	AdditionalConfig  string   `json:"additionalConfig,omitempty"`
	AdvancedConfig    string   `json:"advancedConfig,omitempty"`
	EnvConfig         string   `json:"envConfig,omitempty"`
	ErlangInetConfig  string   `json:"erlangInetConfig,omitempty"`
}

type rabbitmqTLS struct {
	SecretName             string `json:"secretName,omitempty"`
	CaSecretName           string `json:"caSecretName,omitempty"`
	DisableNonTLSListeners bool   `json:"disableNonTLSListeners,omitempty"`
}

// OT-CONTAINER-KIT redis-operator (redis.redis.opstreelabs.in/v1beta2), the
// standalone Redis of api/redis/v1beta2 and api/common/v1beta2.

type redisStandalone struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              redisSpec `json:"spec"`
}

type redisSpec struct {
	KubernetesConfig              redisKubernetesConfig      `json:"kubernetesConfig"`
	RedisExporter                 *redisExporter             `json:"redisExporter,omitempty"`
	RedisConfig                   *redisConfig               `json:"redisConfig,omitempty"`
	Storage                       *redisStorage              `json:"storage,omitempty"`
	NodeSelector                  map[string]string          `json:"nodeSelector,omitempty"`
	PodSecurityContext            *corev1.PodSecurityContext `json:"podSecurityContext,omitempty"`
	SecurityContext               *corev1.SecurityContext    `json:"securityContext,omitempty"`
	PriorityClassName             string                     `json:"priorityClassName,omitempty"`
	Affinity                      *corev1.Affinity           `json:"affinity,omitempty"`
	Tolerations                   *[]corev1.Toleration       `json:"tolerations,omitempty"`
	ReadinessProbe                *corev1.Probe              `json:"readinessProbe,omitempty"`
	LivenessProbe                 *corev1.Probe              `json:"livenessProbe,omitempty"`
	ServiceAccountName            *string                    `json:"serviceAccountName,omitempty"`
	TerminationGracePeriodSeconds *int64                     `json:"terminationGracePeriodSeconds,omitempty"`
	EnvVars                       *[]corev1.EnvVar           `json:"env,omitempty"`
}

type redisKubernetesConfig struct {
	Image            string                         `json:"image"`
	ImagePullPolicy  corev1.PullPolicy              `json:"imagePullPolicy,omitempty"`
	Resources        *corev1.ResourceRequirements   `json:"resources,omitempty"`
	RedisSecret      *redisSecretRef                `json:"redisSecret,omitempty"`
	ImagePullSecrets *[]corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}

type redisSecretRef struct {
	Name *string `json:"name,omitempty"`
	Key  *string `json:"key,omitempty"`
}

type redisExporter struct {
	Enabled   bool                         `json:"enabled,omitempty"`
	Port      *int                         `json:"port,omitempty"`
	Image     string                       `json:"image"`
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

type redisConfig struct {
	MaxMemoryPercentOfLimit *int     `json:"maxMemoryPercentOfLimit,omitempty"`
	DynamicConfig           []string `json:"dynamicConfig,omitempty"`
	AdditionalRedisConfig   *string  `json:"additionalRedisConfig,omitempty"`
}

type redisStorage struct {
	KeepAfterDelete     bool                         `json:"keepAfterDelete,omitempty"`
	VolumeClaimTemplate corev1.PersistentVolumeClaim `json:"volumeClaimTemplate,omitempty"`
}
