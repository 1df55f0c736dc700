"""What another local account tries against the kiosk screen (standard library only: it
runs as an unprivileged user with Debian's python3, see tests/kiosk_env.py).

    verdict FEED          put a forged verdict on the screen through the feed socket
    flood FEED SECONDS    forged and hostile datagrams as fast as possible
    bind PORT             take the page's port
    get PORT HOST         GET / with this Host header (DNS rebinding)
    viewers PORT N SECS   N event streams that never read, held for SECS

Each prints one line: what happened.
"""

import json
import socket
import sys
import time

FORGED = {"verdict": {"look": "accepted", "kind": "coupon", "at_ms": 0, "seq": 999,
                      "coupon_name": "FREE TAXI", "remaining": 99, "direction": None}}


def send(path: str, payload: bytes) -> str:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.sendto(payload, path)
        return "sent"
    except PermissionError:
        return "denied"
    except OSError as exc:
        return f"error {exc.errno}"
    finally:
        sock.close()


def main(argv: list[str]) -> None:
    what = argv[0]
    if what == "verdict":
        print(send(argv[1], json.dumps(FORGED).encode()))
    elif what == "flood":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        payloads = [json.dumps(FORGED).encode(), b"[" * 5000, b"[" * 1500, b"\xff" * 100,
                    b"{" + b" " * 60000 + b"}"]
        end, sent, refused = time.monotonic() + float(argv[2]), 0, 0
        while time.monotonic() < end:
            for payload in payloads:
                try:
                    sock.sendto(payload, argv[1])
                    sent += 1
                except BlockingIOError:
                    time.sleep(0.0005)
                except OSError:
                    refused += 1
        print(f"sent {sent} refused {refused}")
    elif what == "bind":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(("127.0.0.1", int(argv[1])))
            sock.listen(1)
            print("bound")
        except OSError as exc:
            print(f"refused {exc.errno}")
    elif what == "get":
        sock = socket.create_connection(("127.0.0.1", int(argv[1])), timeout=5)
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {argv[2]}\r\nConnection: close\r\n\r\n"
                     .encode())
        try:
            reply = sock.recv(100)
        except ConnectionResetError:
            reply = b""
        print(reply.split(b"\r\n", 1)[0].decode() or "closed")
    elif what == "viewers":
        socks = []
        for _ in range(int(argv[2])):
            sock = socket.create_connection(("127.0.0.1", int(argv[1])), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{argv[1]}\r\n\r\n".encode())
            socks.append(sock)
        alive = 0
        for sock in socks:  # a refused stream is closed at once, before any reply
            sock.settimeout(0.5)
            try:
                alive += sock.recv(1, socket.MSG_PEEK) != b""
            except (TimeoutError, ConnectionResetError):
                alive += 1  # nothing yet: still open
        print(f"holding {alive}", flush=True)
        time.sleep(float(argv[3]))


if __name__ == "__main__":
    main(sys.argv[1:])
