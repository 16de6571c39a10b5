package openshift_test

import (
	"log"
	"os"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/openshift"
)

// One bridged VM as a BareMetalHost for a running cluster: apply the output
// with `oc apply -f`.
func ExampleBareMetalHosts() {
	hosts := []openshift.Host{{
		Name:       "skinner-worker-2",
		BMCAddress: "192.168.86.168:627",
		Username:   "admin",
		Password:   "password",
		BootMAC:    "00:50:56:8a:00:04",
		UEFI:       true,
		Online:     true,
	}}
	if err := openshift.BareMetalHosts(os.Stdout, hosts, openshift.Options{}); err != nil {
		log.Fatal(err)
	}
	// Output:
	// apiVersion: v1
	// kind: Secret
	// metadata:
	//   name: skinner-worker-2-bmc-secret
	//   namespace: openshift-machine-api
	// type: Opaque
	// data:
	//   username: "YWRtaW4="
	//   password: "cGFzc3dvcmQ="
	// ---
	// apiVersion: metal3.io/v1alpha1
	// kind: BareMetalHost
	// metadata:
	//   name: skinner-worker-2
	//   namespace: openshift-machine-api
	// spec:
	//   online: true
	//   bootMACAddress: "00:50:56:8a:00:04"
	//   bootMode: UEFI
	//   bmc:
	//     address: "ipmi://192.168.86.168:627"
	//     credentialsName: skinner-worker-2-bmc-secret
}

// The same VM for install-config.yaml, driven through the bridge's Redfish
// service, where it is known as system "skinner-worker-2".
func ExampleInstallConfigHosts() {
	hosts := []openshift.Host{{
		Name:          "skinner-worker-2",
		BMCAddress:    "192.168.86.168:627",
		Username:      "admin",
		Password:      "password",
		BootMAC:       "00:50:56:8a:00:04",
		UEFI:          true,
		RedfishSystem: "skinner-worker-2",
	}}
	opts := openshift.Options{RedfishPort: 8443}
	if err := openshift.InstallConfigHosts(os.Stdout, hosts, opts); err != nil {
		log.Fatal(err)
	}
	// Output:
	// platform:
	//   baremetal:
	//     hosts:
	//       - name: skinner-worker-2
	//         role: worker
	//         bmc:
	//           address: "redfish-virtualmedia://192.168.86.168:8443/redfish/v1/Systems/skinner-worker-2"
	//           username: admin
	//           password: password
	//           disableCertificateVerification: true
	//         bootMACAddress: "00:50:56:8a:00:04"
	//         bootMode: UEFI
}

// What the daemon does for `bmh`: the --control-plane globs (here the
// default) choose the hosts Metal3 must leave alone, and a VM whose secure
// boot is on, driven through Redfish, boots UEFISecureBoot. The master stays
// online although bmh --offline asked otherwise.
func ExampleParseControlPlane() {
	cp, err := openshift.ParseControlPlane([]string{openshift.DefaultControlPlane})
	if err != nil {
		log.Fatal(err)
	}
	h := openshift.Host{
		Name:          "skinner-master-0",
		BMCAddress:    "192.168.86.168:623",
		Username:      "admin",
		Password:      "password",
		BootMAC:       "00:50:56:8a:00:00",
		UEFI:          true,
		SecureBoot:    true,
		Online:        false,
		RedfishSystem: "skinner-master-0",
	}
	h.ControlPlane = cp.Match(h.Name)
	opts := openshift.Options{RedfishPort: 8443}
	if err := openshift.BareMetalHosts(os.Stdout, []openshift.Host{h}, opts); err != nil {
		log.Fatal(err)
	}
	// Output:
	// apiVersion: v1
	// kind: Secret
	// metadata:
	//   name: skinner-master-0-bmc-secret
	//   namespace: openshift-machine-api
	// type: Opaque
	// data:
	//   username: "YWRtaW4="
	//   password: "cGFzc3dvcmQ="
	// ---
	// apiVersion: metal3.io/v1alpha1
	// kind: BareMetalHost
	// metadata:
	//   name: skinner-master-0
	//   namespace: openshift-machine-api
	// spec:
	//   online: true
	//   externallyProvisioned: true
	//   automatedCleaningMode: disabled
	//   bootMACAddress: "00:50:56:8a:00:00"
	//   bootMode: UEFISecureBoot
	//   bmc:
	//     address: "redfish-virtualmedia://192.168.86.168:8443/redfish/v1/Systems/skinner-master-0"
	//     credentialsName: skinner-master-0-bmc-secret
	//     disableCertificateVerification: true
}
