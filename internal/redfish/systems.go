package redfish

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// computerSystem is the ComputerSystem resource with the properties
// sushy and Ironic read (sushy's resources/system/system.py; Ironic's
// redfish inspect and management interfaces).
type computerSystem struct {
	ODataID            string `json:"@odata.id"`
	ODataType          string `json:"@odata.type"`
	ID                 string `json:"Id"`
	Name               string
	Manufacturer       string
	Model              string
	SerialNumber       string
	UUID               string
	BiosVersion        string
	PowerState         string
	Boot               bootView
	ProcessorSummary   processorSummary
	MemorySummary      memorySummary
	Processors         link
	Memory             link
	Storage            link
	SimpleStorage      link
	SecureBoot         link
	Bios               link
	EthernetInterfaces link
	VirtualMedia       link
	LogServices        link
	Links              systemLinks
	Actions            systemActions
	Status             status
}

type processorSummary struct {
	Count                 int
	LogicalProcessorCount int
	Status                status
}

type memorySummary struct {
	TotalSystemMemoryGiB float64
	Status               status
}

type systemLinks struct {
	ManagedBy []link
	Chassis   []link
}

type systemActions struct {
	Reset resetAction `json:"#ComputerSystem.Reset"`
}

type resetAction struct {
	Target  string   `json:"target"`
	Allowed []string `json:"ResetType@Redfish.AllowableValues"`
}

// powerState is the Redfish PowerState: a suspended VM runs no code and
// reads Off, as on the IPMI side.
func powerState(ps machine.PowerState) string {
	if ps.IsOn() {
		return "On"
	}
	return "Off"
}

// biosVersion names the firmware the VM boots with; vSphere reports no
// version of it.
func biosVersion(m machine.BootMode) string {
	if m == machine.BootModeLegacy {
		return "VMware BIOS"
	}
	return "VMware EFI"
}

// systemState is what the machine reports for a ComputerSystem.
type systemState struct {
	id    machine.Identity
	power machine.PowerState
	boot  machine.BootOverride
}

// readSystem reads the system from its machine.
func readSystem(ctx context.Context, sys System) (systemState, error) {
	var st systemState
	var err error
	if st.id, err = sys.Machine.Identity(ctx); err != nil {
		return st, fmt.Errorf("identity: %w", err)
	}
	if st.power, err = sys.Machine.PowerState(ctx); err != nil {
		return st, fmt.Errorf("power state: %w", err)
	}
	if st.boot, err = sys.Machine.BootOverride(ctx); err != nil {
		return st, fmt.Errorf("boot override: %w", err)
	}
	return st, nil
}

// view is the ComputerSystem resource of sys in state st.
func (st systemState) view(sys System) computerSystem {
	path := systemPath(sys.ID)
	name := st.id.Name
	if name == "" {
		name = sys.ID
	}
	cpus := 0
	if st.id.CPUs > 0 {
		cpus = 1 // one processor resource carries all vCPUs
	}
	return computerSystem{
		ODataID:            path,
		ODataType:          "#ComputerSystem.v1_13_0.ComputerSystem",
		ID:                 sys.ID,
		Name:               name,
		Manufacturer:       st.id.Manufacturer, // the SMBIOS one, so that out-of-band and in-band inspection agree
		Model:              st.id.Model,
		SerialNumber:       st.id.SerialNumber,
		UUID:               st.id.UUID,
		BiosVersion:        biosVersion(st.boot.Mode),
		PowerState:         powerState(st.power),
		Boot:               viewBoot(st.boot),
		ProcessorSummary:   processorSummary{Count: cpus, LogicalProcessorCount: st.id.CPUs, Status: enabled},
		MemorySummary:      memorySummary{TotalSystemMemoryGiB: float64(st.id.MemoryMiB) / 1024, Status: enabled},
		Processors:         ref(path + "/Processors"),
		Memory:             ref(path + "/Memory"),
		Storage:            ref(path + "/Storage"),
		SimpleStorage:      ref(path + "/SimpleStorage"),
		SecureBoot:         ref(path + "/SecureBoot"),
		Bios:               ref(path + "/Bios"),
		EthernetInterfaces: ref(path + "/EthernetInterfaces"),
		VirtualMedia:       ref(path + "/VirtualMedia"),
		LogServices:        ref(path + "/LogServices"),
		Links: systemLinks{
			ManagedBy: []link{ref(managerPath(sys.ID))},
			Chassis:   []link{ref(chassisPath(sys.ID))},
		},
		Actions: systemActions{Reset: resetAction{Target: path + "/Actions/ComputerSystem.Reset", Allowed: allowedResetTypes(st.id, st.power)}},
		Status:  enabled,
	}
}

func (s *Server) getSystems(q *request) error {
	var members []link
	for _, sys := range q.visible {
		members = append(members, ref(systemPath(sys.ID)))
	}
	return writeResource(q, http.StatusOK, collection("/redfish/v1/Systems", "#ComputerSystemCollection.ComputerSystemCollection", "Computer System Collection", members))
}

func (s *Server) getSystem(q *request) error {
	st, err := readSystem(q.r.Context(), q.sys)
	if err != nil {
		return err
	}
	b, tag := s.renderSystem(q.sys, st)
	return writeRendered(q, http.StatusOK, b, tag)
}

// renderedSystem is a system's resource as rendered from a state.
type renderedSystem struct {
	st   systemState
	body []byte
	tag  string
}

// renderSystem renders sys in state st, or returns what it rendered last
// when the state has not changed since: Ironic reads each system every
// minute or so, mostly unchanged, and marshalling by reflection (and
// hashing for the ETag) was a tenth of a GET's CPU.
func (s *Server) renderSystem(sys System, st systemState) ([]byte, string) {
	s.sysMu.Lock()
	c := s.sysCache[sys.ID]
	s.sysMu.Unlock()
	if c != nil && c.st.equal(st) {
		return c.body, c.tag
	}
	b := render(st.view(sys))
	c = &renderedSystem{st: st, body: b, tag: etag(b)}
	s.sysMu.Lock()
	s.sysCache[sys.ID] = c
	s.sysMu.Unlock()
	return c.body, c.tag
}

func (a systemState) equal(b systemState) bool {
	return a.power == b.power && a.boot == b.boot && a.id.Equal(b.id)
}

// cpuID is the one processor resource. Ironic counts CPUs as the sum of
// TotalThreads over the processors, so it carries all vCPUs of the VM.
const cpuID = "CPU1"

func (s *Server) getProcessors(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	path := systemPath(q.sys.ID) + "/Processors"
	var members []link
	if id.CPUs > 0 {
		members = append(members, ref(path+"/"+cpuID))
	}
	return writeResource(q, http.StatusOK, collection(path, "#ProcessorCollection.ProcessorCollection", "Processors Collection", members))
}

func (s *Server) getProcessor(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	pid := q.r.PathValue("pid")
	if pid != cpuID || id.CPUs <= 0 {
		return errNotFound("Processor", pid)
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":             systemPath(q.sys.ID) + "/Processors/" + cpuID,
		"@odata.type":           "#Processor.v1_7_0.Processor",
		"Id":                    cpuID,
		"Name":                  "Processor",
		"Socket":                "CPU 1",
		"ProcessorType":         "CPU",
		"ProcessorArchitecture": "x86",
		"InstructionSet":        "x86-64",
		"TotalCores":            id.CPUs,
		"TotalThreads":          id.CPUs,
		"Status":                enabled,
	})
}

// NICs are named NIC1, NIC2, ... in the VM's device order.
func nicID(i int) string { return "NIC" + strconv.Itoa(i+1) }

func (s *Server) getNICs(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	path := systemPath(q.sys.ID) + "/EthernetInterfaces"
	var members []link
	for i := range id.MACs {
		members = append(members, ref(path+"/"+nicID(i)))
	}
	return writeResource(q, http.StatusOK, collection(path, "#EthernetInterfaceCollection.EthernetInterfaceCollection", "Ethernet Interface Collection", members))
}

// getNIC answers one NIC: Ironic's inspection records its MAC as a port.
func (s *Server) getNIC(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	nid := q.r.PathValue("nid")
	for i, mac := range id.MACs {
		if nicID(i) == nid {
			return writeResource(q, http.StatusOK, map[string]any{
				"@odata.id":           systemPath(q.sys.ID) + "/EthernetInterfaces/" + nid,
				"@odata.type":         "#EthernetInterface.v1_6_0.EthernetInterface",
				"Id":                  nid,
				"Name":                "Ethernet Interface " + strings.TrimPrefix(nid, "NIC"),
				"MACAddress":          mac,
				"PermanentMACAddress": mac,
				"Status":              enabled,
			})
		}
	}
	return errNotFound("EthernetInterface", nid)
}
