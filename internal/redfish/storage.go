package redfish

import (
	"net/http"
	"slices"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// The storage and memory inventory of a system, from the VM's virtual
// hardware. Ironic's redfish inspection (what Metal3's inspection uses
// with Redfish BMCs) takes local_gb from SimpleStorage's devices and from
// Storage's drives (the smallest of at least 4 GiB, less one), through
// sushy, which counts a SimpleStorage device only when its Status.State is
// Enabled; without them it reports local_gb 0 and the installer's disk
// checks fail.

func (s *Server) routeInventory() {
	sys := "/redfish/v1/Systems/{id}"
	s.route(sys+"/Storage", get(oneSystem, s.getStorageCollection))
	s.route(sys+"/Storage/{cid}", get(oneSystem, s.getStorage))
	s.route(sys+"/Storage/{cid}/Drives/{did}", get(oneSystem, s.getDrive))
	s.route(sys+"/SimpleStorage", get(oneSystem, s.getSimpleStorageCollection))
	s.route(sys+"/SimpleStorage/{cid}", get(oneSystem, s.getSimpleStorage))
	s.route(sys+"/Memory", get(oneSystem, s.getMemoryCollection))
	s.route(sys+"/Memory/{mid}", get(oneSystem, s.getMemory))
}

// controller is one storage controller and its disks, in device order.
type controller struct {
	id, name, bus string
	maker         string // the platform's: virtual controllers and disks are its
	disks         []machine.Disk
}

// controllers groups disks by controller; a disk whose controller is not
// known gets one of its own, so that no disk goes unreported.
func controllers(disks []machine.Disk) []controller {
	var out []controller
	for _, d := range disks {
		cid := d.ControllerID
		if cid == "" {
			cid = "disk" + d.ID
		}
		i := slices.IndexFunc(out, func(c controller) bool { return c.id == cid })
		if i < 0 {
			name := d.Controller
			if name == "" {
				name = "Storage controller"
			}
			out = append(out, controller{id: cid, name: name, bus: d.Bus})
			i = len(out) - 1
		}
		out[i].disks = append(out[i].disks, d)
	}
	return out
}

func (s *Server) storageControllers(q *request) ([]controller, error) {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return nil, err
	}
	cs := controllers(id.Disks)
	for i := range cs {
		cs[i].maker = id.Manufacturer
	}
	return cs, nil
}

func (s *Server) findController(q *request) (controller, error) {
	cs, err := s.storageControllers(q)
	if err != nil {
		return controller{}, err
	}
	cid := q.r.PathValue("cid")
	for _, c := range cs {
		if c.id == cid {
			return c, nil
		}
	}
	return controller{}, errNotFound("Storage", cid)
}

func storagePath(sysID, cid string) string { return systemPath(sysID) + "/Storage/" + cid }

func (s *Server) getStorageCollection(q *request) error {
	cs, err := s.storageControllers(q)
	if err != nil {
		return err
	}
	var members []link
	for _, c := range cs {
		members = append(members, ref(storagePath(q.sys.ID, c.id)))
	}
	return writeResource(q, http.StatusOK, collection(systemPath(q.sys.ID)+"/Storage", "#StorageCollection.StorageCollection", "Storage Collection", members))
}

func (s *Server) getStorage(q *request) error {
	c, err := s.findController(q)
	if err != nil {
		return err
	}
	path := storagePath(q.sys.ID, c.id)
	drives := []link{}
	for _, d := range c.disks {
		drives = append(drives, ref(path+"/Drives/"+d.ID))
	}
	protocols := []string{}
	if p := protocol(c.bus); p != "" {
		protocols = append(protocols, p)
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":   path,
		"@odata.type": "#Storage.v1_8_0.Storage",
		"Id":          c.id,
		"Name":        c.name,
		"StorageControllers": []map[string]any{{
			"@odata.id":                    path + "#/StorageControllers/0",
			"MemberId":                     "0",
			"Name":                         c.name,
			"Manufacturer":                 c.maker,
			"SupportedControllerProtocols": []string{"PCIe"},
			"SupportedDeviceProtocols":     protocols,
			"Status":                       enabled,
		}},
		"Drives":             drives,
		"Drives@odata.count": len(drives),
		"Status":             enabled,
	})
}

// protocol is the Redfish Protocol of a bus; SCSI disks of a VM are
// presented as SAS by the LSI SAS and paravirtual controllers and as
// parallel SCSI by the older ones, which Redfish has no value for, so
// SAS stands for both.
func protocol(bus string) string {
	switch bus {
	case "SCSI":
		return "SAS"
	case "SATA", "NVMe":
		return bus
	case "IDE":
		return "SATA" // the closest Redfish has to parallel ATA
	}
	return ""
}

func (s *Server) getDrive(q *request) error {
	c, err := s.findController(q)
	if err != nil {
		return err
	}
	did := q.r.PathValue("did")
	for _, d := range c.disks {
		if d.ID != did {
			continue
		}
		v := map[string]any{
			"@odata.id":     storagePath(q.sys.ID, c.id) + "/Drives/" + d.ID,
			"@odata.type":   "#Drive.v1_9_0.Drive",
			"Id":            d.ID,
			"Name":          d.Name,
			"CapacityBytes": d.CapacityBytes,
			"Manufacturer":  c.maker,
			"Model":         "Virtual disk",
			"Status":        enabled,
		}
		if p := protocol(c.bus); p != "" {
			v["Protocol"] = p
		}
		if d.UUID != "" {
			// vSphere's disk UUID: the serial and WWN the guest sees when
			// the VM has disk.EnableUUID, as OpenShift's installer asks.
			v["SerialNumber"] = d.UUID
			v["Identifiers"] = []map[string]string{{"DurableNameFormat": "UUID", "DurableName": d.UUID}}
		}
		return writeResource(q, http.StatusOK, v)
	}
	return errNotFound("Drive", did)
}

func simpleStoragePath(sysID, cid string) string {
	return systemPath(sysID) + "/SimpleStorage/" + cid
}

func (s *Server) getSimpleStorageCollection(q *request) error {
	cs, err := s.storageControllers(q)
	if err != nil {
		return err
	}
	var members []link
	for _, c := range cs {
		members = append(members, ref(simpleStoragePath(q.sys.ID, c.id)))
	}
	return writeResource(q, http.StatusOK, collection(systemPath(q.sys.ID)+"/SimpleStorage", "#SimpleStorageCollection.SimpleStorageCollection", "Simple Storage Collection", members))
}

func (s *Server) getSimpleStorage(q *request) error {
	c, err := s.findController(q)
	if err != nil {
		return err
	}
	devices := []map[string]any{}
	for _, d := range c.disks {
		devices = append(devices, map[string]any{
			"Name":          d.Name,
			"Manufacturer":  c.maker,
			"Model":         "Virtual disk",
			"CapacityBytes": d.CapacityBytes,
			"Status":        enabled,
		})
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":   simpleStoragePath(q.sys.ID, c.id),
		"@odata.type": "#SimpleStorage.v1_3_0.SimpleStorage",
		"Id":          c.id,
		"Name":        c.name,
		"Devices":     devices,
		"Status":      enabled,
	})
}

// memoryID names the one memory resource: a VM's memory is one device.
const memoryID = "DIMM0"

func (s *Server) getMemoryCollection(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	path := systemPath(q.sys.ID) + "/Memory"
	var members []link
	if id.MemoryMiB > 0 {
		members = append(members, ref(path+"/"+memoryID))
	}
	return writeResource(q, http.StatusOK, collection(path, "#MemoryCollection.MemoryCollection", "Memory Collection", members))
}

func (s *Server) getMemory(q *request) error {
	id, err := q.sys.Machine.Identity(q.r.Context())
	if err != nil {
		return err
	}
	mid := q.r.PathValue("mid")
	if mid != memoryID || id.MemoryMiB <= 0 {
		return errNotFound("Memory", mid)
	}
	return writeResource(q, http.StatusOK, map[string]any{
		"@odata.id":    systemPath(q.sys.ID) + "/Memory/" + memoryID,
		"@odata.type":  "#Memory.v1_10_0.Memory",
		"Id":           memoryID,
		"Name":         "Virtual memory",
		"MemoryType":   "DRAM",
		"CapacityMiB":  id.MemoryMiB,
		"Manufacturer": id.Manufacturer,
		"Status":       enabled,
	})
}
