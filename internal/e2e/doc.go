// Package e2e holds the end-to-end tests: the bridge serving the embedded
// vCenter simulator on 127.0.0.1, driven by the real clients operators use
// (ipmitool, FreeIPMI, pyghmi), with every outcome checked on the VM in the
// simulator rather than in the client's output alone.
package e2e
