// Package redfish owns the Redfish side of the bridge: one HTTPS service that
// presents every bridged VM as a ComputerSystem with its Manager (the virtual
// BMC), Chassis and virtual CD drive, over the same machine.Machine the IPMI
// endpoints use, so that power, boot and media semantics and the mapping of
// machine errors are written once per protocol.
//
// The subset served is what Ironic's redfish and redfish-virtual-media
// drivers read and send through sushy (sushy's resources and Ironic 21.4's
// redfish/boot.py, power.py and management.py): the service
// root before authentication, a SessionService and HTTP Basic auth,
// ComputerSystem.Reset, a partial PATCH of Boot with ETags, VirtualMedia
// InsertMedia and EjectMedia under both the Manager and the System, the
// storage, memory, secure boot and BIOS resources Ironic's inspection and
// UEFISecureBoot flow read, and what DSP0266 asks of every service
// ($metadata, headers, AccountService). Every error is a Redfish error body
// with a Base registry message. The top-level README's "Redfish" section is
// the reference for users.
//
// The owner supplies the systems as a function, so that BMCs come and go at
// runtime; each request authenticates against the credentials of the system
// it addresses, and collections list only the systems the caller's
// credentials open.
package redfish
