#!/usr/bin/python3
"""A minimal pyghmi BMC (the engine of virtualbmc) for scripts/bench.sh.

It subclasses pyghmi.ipmi.bmc.Bmc with an in-memory machine (power state and
boot device) and serves one IPMI v2.0 endpoint on 127.0.0.1.  Run it with
Debian's /usr/bin/python3 (python3-pyghmi), not a pyenv python:

    /usr/bin/python3 scripts/bench/pyghmi_bmc.py --port 0

With --port 0 the kernel picks a free UDP port.  Once the socket is bound the
script prints one line, "listening 127.0.0.1:PORT", and then serves until it
is killed.
"""

import argparse
import sys

import pyghmi.ipmi.bmc as bmc


class BenchBmc(bmc.Bmc):
    """A BMC whose machine is two variables, like virtualbmc's fake driver."""

    def __init__(self, authdata, port, address):
        super().__init__(authdata, port=port, address=address)
        # pyghmi routes session packets by self.port, so with port 0 it must
        # hold the port the kernel picked.
        self.port = self.serversocket.getsockname()[1]
        self.powerstate = 'off'
        self.bootdevice = 'default'

    def get_power_state(self):
        return self.powerstate

    def power_on(self):
        self.powerstate = 'on'

    def power_off(self):
        self.powerstate = 'off'

    def power_shutdown(self):
        self.powerstate = 'off'

    def power_cycle(self):
        if self.powerstate == 'off':
            return 0xd5  # not supported in present state
        self.powerstate = 'on'
        return None

    def power_reset(self):
        if self.powerstate == 'off':
            return 0xd5
        return None

    def pulse_diag(self):
        if self.powerstate == 'off':
            return 0xd5
        return None

    def cold_reset(self):
        return 0

    def is_active(self):
        return self.powerstate == 'on'

    def get_boot_device(self):
        return self.bootdevice

    def set_boot_device(self, bootdevice):
        self.bootdevice = bootdevice


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--address', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0)
    parser.add_argument('--user', default='admin')
    parser.add_argument('--password', default='password')
    args = parser.parse_args()
    server = BenchBmc({args.user: args.password}, args.port, args.address)
    print('listening %s:%d' % (args.address, server.port), flush=True)
    server.listen(timeout=30)


if __name__ == '__main__':
    sys.exit(main())
