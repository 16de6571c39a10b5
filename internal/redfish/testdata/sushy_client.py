"""Drive the Redfish service with sushy, as Ironic's redfish drivers do.

usage: sushy_client.py URL SYSTEM AUTH VERIFY STEP...
  URL     https://127.0.0.1:PORT
  SYSTEM  /redfish/v1/Systems/<id>
  AUTH    session | basic | auto   (credentials in REDFISH_USERNAME, REDFISH_PASSWORD)
  VERIFY  false, or a CA file to verify the server's certificate with
STEP:
  system                     print what Ironic reads from the System
  reset=RESETTYPE            ComputerSystem.Reset (Ironic's power actions)
  boot=TARGET:ENABLED:MODE   set_system_boot_options; empty parts are not sent
  bootsource=TARGET:ENABLED  set_system_boot_source
  eject=manager|system       eject every inserted CD, as Ironic does
  insert=manager|system:URL  insert URL into the CD device, as Ironic does
  media=manager|system       print the CD device
  verify=manager|system:BOOL set_verify_certificate on the CD device
  inspect                    print what Ironic's redfish inspection derives
                             (memory_mb, cpus, local_gb) and the disk sizes
  memory                     print the Memory collection's capacities
  bios[=NAME:VALUE]          set a BIOS attribute as Ironic's bios interface
                             does, then print the attributes, the pending
                             ones and the registry's attribute names
  secureboot[=true|false]    set SecureBootEnable as Ironic's UEFISecureBoot
                             flow does, then print the SecureBoot resource
  sessions                   print the session ids
  wait                       print {"wait": true} and read a line from stdin
  close                      end the session (DELETE of its Location)
Prints one JSON object per step. A failure prints {"error": ..., "status":
..., "message": ...} and exits 1.
"""
import json
import os
import sys

import urllib3

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions
from sushy import utils
from sushy.resources.manager import virtual_media


def cd_devices(root, system, parent):
    """The CD-capable VirtualMedia of the system's manager or of the system."""
    if parent == "manager":
        coll = system.managers[0].virtual_media
    else:
        # Master Ironic: the System's own VirtualMedia when it links one.
        coll = virtual_media.VirtualMediaCollection(
            system._conn, utils.get_sub_resource_path_by(system, "VirtualMedia"),
            redfish_version=root.redfish_version, root=root)
    return [v for v in coll.get_members() if sushy.VirtualMediaType.CD in v.media_types]


def describe_system(system):
    return {
        "id": system.identity,
        "name": system.name,
        "power": system.power_state.value,
        "target": system.boot.target.value,
        "enabled": system.boot.enabled.value,
        "mode": system.boot.mode.value if system.boot.mode else None,
        "uuid": system.uuid,
        "manufacturer": system.manufacturer,
        "model": system.json.get("Model"),  # sushy 4.3.3 has no field for it
        "serial": system.serial_number,
        "bios": system.bios_version,
        "memory_gib": system.memory_summary.size_gib,
        "cpus": system.processors.summary.count,
        "arch": system.processors.summary.architecture.value,
        "macs": sorted(system.ethernet_interfaces.summary),
        "managers": [m.identity for m in system.managers],
        "chassis": [c.identity for c in system.chassis],
        "resets": sorted(v.value for v in system.get_allowed_reset_system_values()),
    }


def sizes(get):
    """Sizes from a sushy property; a SushyError (a missing link) is none,
    as Ironic's inspection treats it."""
    try:
        return sorted(get() or [])
    except exceptions.SushyError:
        return []


def inspect(system):
    """Ironic's redfish inspection of local_gb (inspect.py, _detect_local_gb):
    of SimpleStorage's disks, then Storage's volumes or else drives, the
    first of at least 4 GiB; the smaller of the two when both give one; in
    GiB, less one."""
    gib = 1024 ** 3
    simple = sizes(lambda: system.simple_storage.disks_sizes_bytes)
    volumes = sizes(lambda: system.storage.volumes_sizes_bytes)
    drives = sizes(lambda: system.storage.drives_sizes_bytes)
    first = lambda xs: ([x for x in xs if x >= 4 * gib] or [0])[0]
    s, t = first(simple), first(volumes) or first(drives)
    local = min(s, t) if s and t else max(s, t)
    return {"memory_mb": system.memory_summary.size_gib * 1024,
            "cpus": system.processors.summary.count,
            "local_gb": max(0, int(local / gib - 1)),
            "simple": simple, "drives": drives, "volumes": volumes}


def run(root, system_path, step, auth):
    kind, _, arg = step.partition("=")
    system = root.get_system(system_path)
    if kind == "system":
        return describe_system(system)
    if kind == "reset":
        system.reset_system(sushy.ResetType(arg))
        return {"reset": arg}
    if kind in ("boot", "bootsource"):
        parts = (arg.split(":") + ["", "", ""])[:3]
        target = sushy.BootSource(parts[0]) if parts[0] else None
        enabled = sushy.BootSourceOverrideEnabled(parts[1]) if parts[1] else None
        mode = sushy.BootSourceOverrideMode(parts[2]) if parts[2] else None
        if kind == "boot":
            system.set_system_boot_options(target=target, enabled=enabled, mode=mode)
        else:
            system.set_system_boot_source(target, enabled=enabled)
        system.refresh()
        return {"target": system.boot.target.value, "enabled": system.boot.enabled.value,
                "mode": system.boot.mode.value}
    if kind == "eject":
        ejected = []
        for dev in cd_devices(root, system, arg):
            if dev.inserted:
                dev.eject_media()
                ejected.append(dev.identity)
        return {"ejected": ejected}
    if kind == "insert":
        parent, _, url = arg.partition(":")
        inserted = []
        for dev in cd_devices(root, system, parent):
            if dev.inserted and dev.image == url:
                continue  # Ironic skips an image already there
            dev.insert_media(url, inserted=True, write_protected=True)
            inserted.append(dev.identity)
        return {"inserted": inserted}
    if kind == "media":
        dev = cd_devices(root, system, arg)[0]
        return {"id": dev.identity, "inserted": dev.inserted, "image": dev.image,
                "image_name": dev.image_name, "connected_via": dev.connected_via.value,
                "media_types": sorted(t.value for t in dev.media_types),
                "verify_certificate": dev.verify_certificate}
    if kind == "verify":
        parent, _, value = arg.partition(":")
        dev = cd_devices(root, system, parent)[0]
        dev.set_verify_certificate(value == "true")
        dev.refresh()
        return {"verify_certificate": dev.verify_certificate}
    if kind == "inspect":
        return inspect(system)
    if kind == "secureboot":
        sb = system.secure_boot
        if arg:
            sb.set_enabled(arg == "true")
            sb.refresh()
        return {"enabled": sb.enabled, "current_boot": sb.current_boot.value,
                "mode": sb.mode.value}
    if kind == "bios":
        bios = system.bios
        if arg:
            name, _, value = arg.partition(":")
            bios.set_attributes({name: value})
            bios.refresh()
        try:
            registry = bios.get_attribute_registry()
            names = sorted(a.name for a in registry.registry_entries.attributes) if registry else None
        except FileNotFoundError:
            # Debian's python3-sushy lacks the standard registries sushy
            # loads first: follow the registry the way sushy does, by hand.
            conn = system._conn
            names = None
            for m in conn.get("/redfish/v1/Registries").json()["Members"]:
                f = conn.get(m["@odata.id"]).json()
                if f.get("Registry") == bios.json["AttributeRegistry"]:
                    r = conn.get(f["Location"][0]["Uri"]).json()
                    names = sorted(a["AttributeName"] for a in r["RegistryEntries"]["Attributes"])
        return {"attributes": dict(bios.attributes), "pending": dict(bios.pending_attributes),
                "registry": names}
    if kind == "memory":
        # sushy 4.3.3 has no Memory resource: read it through its connection.
        coll = system._conn.get(utils.get_sub_resource_path_by(system, "Memory")).json()
        return {"capacity_mib": [system._conn.get(m["@odata.id"]).json()["CapacityMiB"]
                                 for m in coll["Members"]]}
    if kind == "sessions":
        return {"sessions": sorted(root.get_session_service().sessions.members_identities)}
    if kind == "wait":
        print(json.dumps({"wait": True}), flush=True)
        sys.stdin.readline()
        return {"resumed": True}
    if kind == "close":
        auth.close()
        return {"closed": True}
    raise SystemExit("unknown step " + step)


def main():
    url, system_path, auth_type, verify = sys.argv[1:5]
    user, password = os.environ["REDFISH_USERNAME"], os.environ["REDFISH_PASSWORD"]
    if verify == "false":
        verify = False
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    auth = {"session": sushy_auth.SessionAuth, "basic": sushy_auth.BasicAuth,
            "auto": sushy_auth.SessionOrBasicAuth}[auth_type](username=user, password=password)
    try:
        root = sushy.Sushy(url, auth=auth, verify=verify)
        for step in sys.argv[5:]:
            print(json.dumps(run(root, system_path, step, auth)), flush=True)
    except exceptions.SushyError as e:
        print(json.dumps({"error": type(e).__name__, "status": getattr(e, "status_code", None),
                          "message": str(e)}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
