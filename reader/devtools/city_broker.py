"""`python -m reader.devtools.city_broker`: a development city's broker, in the foreground.

DevBroker (broker.py) on fixed loopback ports with the files of the city's own CA
(`sukumo-city ca init`, `ca server-cert`, `ca crl`): terminals provisioned against it
get their certificates from `sukumo-city ca sign`, exactly as in the field, and a
revoked one is refused (crlfile). Development only: the city's receivers connect with a
certificate of the broker's own throw-away city CA, printed at start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from reader.devtools.broker import DevBroker
from reader.errors import SukumoError
from reader.system.i18n import _


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reader.devtools.city_broker", description=_(
        "A development city's mosquitto (TLS, the mqtt-v1 ACL, the city CA's CRL), in the "
        "foreground until Ctrl-C."))
    p.add_argument("--workdir", type=Path, required=True,
                   help=_("where mosquitto.conf, the ACL and the broker's data go"))
    p.add_argument("--ca", type=Path, required=True,
                   help=_("the city CA's ca.crt (`sukumo-city ca init`)"))
    p.add_argument("--server-cert", type=Path, required=True,
                   help=_("server.crt from `sukumo-city ca server-cert`"))
    p.add_argument("--server-key", type=Path, required=True,
                   help=_("server.key from `sukumo-city ca server-cert`"))
    p.add_argument("--crl", type=Path, default=None,
                   help=_("crl.pem from `sukumo-city ca crl` (refuses revoked terminals)"))
    p.add_argument("--muni", default="392081")
    p.add_argument("--port", type=int, default=8883, help=_("terminals' port (default 8883)"))
    p.add_argument("--city-port", type=int, default=8884,
                   help=_("the city service's port (default 8884)"))
    args = p.parse_args(argv)
    for path in (args.ca, args.server_cert, args.server_key, args.crl):
        if path is not None and not path.is_file():
            print(_("{path}: no such file (make it with `sukumo-city ca`)").format(path=path),
                  file=sys.stderr)
            return 2
    broker = DevBroker(args.workdir, terminals=(), muni=args.muni, terminal_ca=args.ca,
                       server_cert=args.server_cert, server_key=args.server_key,
                       crl_file=args.crl, port=args.port, city_port=args.city_port)
    try:
        broker.start()
    except SukumoError as exc:
        print(str(exc), file=sys.stderr)
        return 3
    receiver = broker.receiver
    print(_("terminals:    {url}  (trust {ca})").format(url=broker.url, ca=args.ca))
    print(_("city service: {url}  cert {cert}  key {key}").format(
        url=broker.city_url, cert=receiver.cert_file, key=receiver.key_file))
    print(_("after `sukumo-city ca crl`, stop and start this again: mosquitto reads the CRL "
            "at start (a SIGHUP reloads it for new connections)"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_a: stop.set())
    signal.signal(signal.SIGINT, lambda *_a: stop.set())
    stop.wait()
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
