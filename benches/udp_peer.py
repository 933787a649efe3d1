"""A bare Python echo loop: the peer that ``benches/net_bench.py`` measures ``ikeqcd serve``
against. It sends every datagram back to its source unchanged with plain ``recvfrom`` /
``sendto``, so its reply rate is what the interpreter and the socket calls alone allow.

    python benches/udp_peer.py --listen 127.0.0.1:10600 [--duration S]

Prints ``listening on HOST:PORT`` once bound and, on SIGINT/SIGTERM or after ``--duration``,
``echoed N datagrams in S s``.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--listen", default="127.0.0.1:10600", metavar="HOST:PORT")
    ap.add_argument("--duration", type=float, default=None, metavar="S")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((host, int(port)))
    sock.settimeout(0.2)
    print(f"listening on {host}:{sock.getsockname()[1]}", flush=True)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    recvfrom, sendto = sock.recvfrom, sock.sendto
    n = 0
    start = time.monotonic()
    deadline = start + args.duration if args.duration is not None else float("inf")
    while not stop and time.monotonic() < deadline:
        try:
            # The hot loop: as bare as Python gets. The timeout only matters when idle.
            while True:
                data, src = recvfrom(65535)
                sendto(data, src)
                n += 1
        except TimeoutError:
            pass
        except InterruptedError:
            pass
    print(f"echoed {n} datagrams in {time.monotonic() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
