// Package deploy holds the deployment artifacts, not code: the systemd unit
// and an example config (systemd/), the container image (container/) and the
// Kubernetes manifests (kubernetes/). Its tests parse each of them, check the
// choices the daemon depends on (privileged port, paths, probes, secrets kept
// out of plain config) and run each example config through the bridge's own
// config parser, so the artifacts cannot drift from the daemon unnoticed.
package deploy
