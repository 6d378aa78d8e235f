//go:build tools

// Package tools pins the helm command the lab builds; `go mod tidy` keeps its dependencies
// in go.sum while the build tag keeps this file out of any binary.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
