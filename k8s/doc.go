// Package k8s holds the Kubernetes manifests of the suite: base/ (the three
// services), components/ (autoscaling, monitoring) and overlays/ (dev for kind
// or minikube, prod for a real cluster). It has no code the services use.
//
// Its tests build every overlay with kustomize, decode every object strictly
// into its API type (the Kubernetes types, the Prometheus Operator's, and
// field-by-field mirrors of KEDA's, the RabbitMQ Cluster Operator's and the
// redis-operator's), and check the rules k8s/README.md states: probes,
// requests, the services' configuration, shutdown, pinned images, the queue
// rules, the backends, autoscaling, selectors and alerts. Broken in-memory
// overlays show that each rule fails when it should. When ko is installed,
// they also build every image to a tarball.
package k8s
