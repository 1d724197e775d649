"""A real TCP proxy in front of the local report API that breaks chosen responses.

Each client connection is piped to the upstream server by two threads. A request whose
first bytes start with ``match`` (e.g. ``b"GET /files/"``) arms the fault for the answer
on that connection, for the first ``times`` such requests:

- ``reset_after``: forward that many bytes of the answer, then reset the connection
  (RST: ``SO_LINGER`` 0), as a peer or a load balancer dropping mid-download;
- ``delay_s``: hold the answer that long before forwarding it (slower than the client's
  read timeout).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass


@dataclass
class Fault:
    match: bytes
    times: int = 1
    reset_after: int | None = None
    delay_s: float = 0.0


class FaultyProxy:
    def __init__(self, upstream_port: int, fault: Fault) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.fault = fault
        self.injected = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()

    def __enter__(self) -> FaultyProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._listener.close()

    @property
    def url(self) -> str:
        # the local API builds file URLs from the Host the client used: through here too
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            armed = threading.Event()
            threading.Thread(
                target=self._requests, args=(client, upstream, armed), daemon=True
            ).start()
            threading.Thread(
                target=self._answers, args=(upstream, client, armed), daemon=True
            ).start()

    def _arm(self) -> bool:
        with self._lock:
            if self.injected < self.fault.times:
                self.injected += 1
                return True
            return False

    def _requests(
        self, client: socket.socket, upstream: socket.socket, armed: threading.Event
    ) -> None:
        try:
            while chunk := client.recv(65536):
                if chunk.startswith(self.fault.match) and self._arm():
                    armed.set()
                upstream.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _answers(
        self, upstream: socket.socket, client: socket.socket, armed: threading.Event
    ) -> None:
        since_armed = 0  # bytes of the armed answer already forwarded
        try:
            while chunk := upstream.recv(65536):
                if armed.is_set():
                    if self.fault.delay_s:
                        time.sleep(self.fault.delay_s)
                        armed.clear()
                    elif self.fault.reset_after is not None:
                        if since_armed + len(chunk) >= self.fault.reset_after:
                            client.sendall(chunk[: self.fault.reset_after - since_armed])
                            client.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                            )
                            # Wake the other thread's recv() on this socket first: while
                            # it blocks there, close() alone does not end the connection
                            # (no RST until the recv returns, so the client would wait
                            # for its read timeout instead of seeing a reset).
                            client.shutdown(socket.SHUT_RD)
                            client.close()  # RST
                            return
                        since_armed += len(chunk)
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(client)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
