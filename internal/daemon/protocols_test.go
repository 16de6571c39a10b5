package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
)

// A Redfish-only BMC (ipmi: false) serves its VM over Redfish and opens no
// UDP port; an IPMI-only one (redfish: false) is no Redfish system. The
// API, bmc check and bmh follow.
func TestRedfishOnlyAndIPMIOnly(t *testing.T) {
	t.Parallel()
	ipmiPort := clienttest.FreeUDPPort(t)
	sd := startSimDaemon(t, "  - vm: skinner-master-0\n    ipmi: false\n    password: pw-12345\n"+
		fmt.Sprintf("  - vm: skinner-master-1\n    address: 127.0.0.1\n    port: %d\n    redfish: false\n    password: pw-12345\n", ipmiPort))
	ctx := context.Background()
	bmcs, err := sd.d.api.BMCs(ctx)
	if err != nil || len(bmcs) != 3 {
		t.Fatalf("bmc list: %v %+v", err, bmcs)
	}
	serves := map[string]api.BMC{}
	for _, b := range bmcs {
		serves[b.Name] = b
	}
	if b := serves["skinner-master-0"]; b.Status != "running" || b.Address != "" || b.IPMI || !b.Redfish {
		t.Errorf("Redfish-only BMC listed as %+v", b)
	}
	if b := serves["skinner-master-1"]; b.Status != "running" || b.Address == "" || !b.IPMI || b.Redfish {
		t.Errorf("IPMI-only BMC listed as %+v", b)
	}
	if out, err := ipmitool(t, "127.0.0.1", ipmiPort, "power", "status"); err != nil || !strings.Contains(out, "Chassis Power is off") {
		t.Errorf("ipmitool on the IPMI-only BMC: %v %s", err, out)
	}
	if got := redfishMembers(t, sd.redfishURL); got != "skinner-worker-2 skinner-master-0" {
		t.Errorf("Redfish systems: %s, want the Redfish-only BMC's and the default one's", got)
	}
	if checks, err := sd.d.api.Check(ctx); err != nil || len(checks) != 2 {
		t.Errorf("bmc check: %v, %d checks, want the two IPMI BMCs'", err, len(checks))
	}
	testProtocolsBMH(t, sd)
}

// insecureClient is an HTTPS client for the test's own daemon, whose
// certificate is self-signed.
func insecureClient() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 5 * time.Second} //nolint:gosec // the test's own daemon
}

// redfishMembers are the ids of /redfish/v1/Systems, in order, as the
// default BMC's credentials see them (all three share them).
func redfishMembers(t *testing.T, url string) string {
	t.Helper()
	client := insecureClient()
	req, _ := http.NewRequest(http.MethodGet, url+"/redfish/v1/Systems", nil)
	req.SetBasicAuth("admin", "pw-12345")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var coll struct {
		Members []struct {
			ID string `json:"@odata.id"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&coll); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range coll.Members {
		ids = append(ids, m.ID[strings.LastIndex(m.ID, "/")+1:])
	}
	return strings.Join(ids, " ")
}

// testProtocolsBMH: bmh gives the Redfish-only BMC's host a Redfish
// address without being asked, and refuses --redfish for an IPMI-only one.
func testProtocolsBMH(t *testing.T, sd *simDaemon) {
	t.Helper()
	var out strings.Builder
	if err := sd.d.api.BMH(context.Background(), api.BMH{Filter: "skinner-master-*", ControlPlane: []string{}}, &out); err != nil {
		t.Fatal(err)
	}
	hosts := bareMetalHosts(t, out.String())
	address := func(host string) string {
		bmc, _ := hosts[host]["bmc"].(map[string]any)
		return fmt.Sprint(bmc["address"])
	}
	want := "redfish-virtualmedia://" + strings.TrimPrefix(sd.redfishURL, "https://") + "/redfish/v1/Systems/skinner-master-0"
	if got := address("skinner-master-0"); got != want {
		t.Errorf("Redfish-only host's address %v, want %s", got, want)
	}
	if got := address("skinner-master-1"); !strings.HasPrefix(got, "ipmi://") {
		t.Errorf("IPMI-only host's address %v, want ipmi://", got)
	}
	err := sd.d.api.BMH(context.Background(), api.BMH{Redfish: true, ControlPlane: []string{}}, &out)
	if err == nil || !strings.Contains(err.Error(), "serves IPMI only") {
		t.Errorf("bmh --redfish with an IPMI-only BMC: %v", err)
	}
}
