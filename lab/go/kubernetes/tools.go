//go:build tools

// Package tools pins the Kubernetes commands the lab builds; `go mod tidy` keeps their
// dependencies in go.sum while the build tag keeps this file out of any binary.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
