"""Drive a BMC with pyghmi's Command, as Ironic's and VirtualBMC's users do.

usage: pyghmi_client.py PORT STEP...   (STEP: power=on|off|status, boot=DEV:persistent|once:uefi|legacy, getboot)
Prints one JSON object per step.
"""
import json
import sys

from pyghmi.ipmi import command


def main():
    port = int(sys.argv[1])
    c = command.Command(bmc="127.0.0.1", port=port, userid="admin", password="password")
    try:
        for step in sys.argv[2:]:
            kind, _, arg = step.partition("=")
            if kind == "power":
                out = c.get_power() if arg == "status" else c.set_power(arg, wait=True)
            elif kind == "boot":
                dev, persist, mode = arg.split(":")
                out = c.set_bootdev(dev, persist=persist == "persistent", uefiboot=mode == "uefi")
            elif kind == "getboot":
                out = c.get_bootdev()
            else:
                raise SystemExit("unknown step " + step)
            print(json.dumps(out), flush=True)
    finally:
        c.ipmi_session.logout()


if __name__ == "__main__":
    main()
