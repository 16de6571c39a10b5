#!/usr/bin/python3
"""Keep-alive Redfish GET loop for scripts/bench.sh.

One HTTPS connection (http.client.HTTPSConnection, certificate not verified:
the bridge's is self-signed), reused for every request, HTTP Basic
authentication; COUNT GETs of one URL path, each answer read to its end.
Standard library only, so any python3 runs it:

    scripts/bench/redfish_get.py --port 8000 \
        --path /redfish/v1/Systems/skinner-master-0 --count 2000

A request the server answers with anything but 200, or a connection it
closes, counts as failed (a closed connection is reopened, and counted).
When done it prints one line on stdout:

    ok=N failed=N reconnects=N wall_ms=N last_error=TEXT

and exits 0 if every request got 200, else 1.
"""

import argparse
import base64
import http.client
import ssl
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=8000)
    parser.add_argument('--path', required=True)
    parser.add_argument('--user', default='admin')
    parser.add_argument('--password', default='password')
    parser.add_argument('--count', type=int, default=2000)
    parser.add_argument('--timeout', type=float, default=30)
    args = parser.parse_args()

    ctx = ssl._create_unverified_context()  # self-signed certificate
    cred = base64.b64encode(('%s:%s' % (args.user, args.password)).encode())
    headers = {'Authorization': 'Basic ' + cred.decode(),
               'Accept': 'application/json'}

    def connect():
        return http.client.HTTPSConnection(args.host, args.port, context=ctx,
                                           timeout=args.timeout)

    conn = connect()
    ok = failed = reconnects = 0
    last_error = ''
    start = time.monotonic()
    for _ in range(args.count):
        try:
            conn.request('GET', args.path, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                ok += 1
            else:
                failed += 1
                last_error = 'HTTP %d' % resp.status
            if resp.will_close:
                conn.close()
                conn = connect()
                reconnects += 1
        except (OSError, http.client.HTTPException) as e:
            failed += 1
            last_error = '%s: %s' % (type(e).__name__, e)
            conn.close()
            conn = connect()
            reconnects += 1
    wall_ms = (time.monotonic() - start) * 1000
    conn.close()
    print('ok=%d failed=%d reconnects=%d wall_ms=%.0f last_error=%s'
          % (ok, failed, reconnects, wall_ms, last_error.replace('\n', ' ')[:120]),
          flush=True)
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
