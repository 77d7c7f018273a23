"""An HTTPS proxy on 127.0.0.1 that serves chosen hosts from local servers and rejects all others.

LiteLLM builds some provider URLs itself (Replicate's always start with https://api.replicate.com),
so a test cannot point them at a mock with a base URL. Given to the gateway as HTTPS_PROXY, this
proxy accepts a CONNECT only for an intercepted host on port 443. It terminates TLS there with a
certificate from a throwaway certificate authority and relays the decrypted HTTP to a plain server
on 127.0.0.1. Any other CONNECT, and any request that is not a CONNECT, gets an immediate 502: the
proxy never opens a connection to anything but 127.0.0.1.

The gateway trusts the authority through SSL_CERT_FILE=<ca_path>. LiteLLM's HTTP clients read that
variable in place of certifi's bundle, so only the process given it trusts the test certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path

import trustme

TLS_PORT = 443
# Seconds a client gets to send its CONNECT request, and then to finish the TLS handshake.
HEADER_TIMEOUT = 10.0


class InterceptingProxy:
    """The proxy server; start and stop it on a running event loop."""

    def __init__(self, routes: dict[str, int], ca_path: Path, host: str = "127.0.0.1") -> None:
        """Serve each host in `routes` from the HTTP server on 127.0.0.1 at the mapped port."""
        self.routes = dict(routes)
        self.ca_path = ca_path
        self.host = host
        self.port = 0
        # CONNECT targets that were tunnelled, and request lines that were rejected, in order.
        self.tunnelled: list[str] = []
        self.rejected: list[str] = []
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

        authority = trustme.CA(organization_name="IMQA gateway tests")
        authority.cert_pem.write_to_path(str(ca_path))
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert(*self.routes).configure_cert(self._tls)
        self._tls.set_alpn_protocols(["http/1.1"])

    @property
    def url(self) -> str:
        """The value for HTTPS_PROXY."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def reset(self) -> None:
        with self._lock:
            self.tunnelled.clear()
            self.rejected.clear()

    # --- one client connection -----------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except asyncio.CancelledError:
            pass  # stop() cancels the connections that are still open
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT)
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        host, _, port = target.rpartition(":")

        if method != "CONNECT" or host not in self.routes or port != str(TLS_PORT):
            with self._lock:
                self.rejected.append(request_line)
            await _reject(writer, f"test proxy: {request_line!r} rejected; only CONNECT to {sorted(self.routes)} "
                                  f"on port {TLS_PORT} is served, and nothing is forwarded beyond 127.0.0.1.\n")
            return

        with self._lock:
            self.tunnelled.append(target)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await writer.start_tls(self._tls, ssl_handshake_timeout=HEADER_TIMEOUT)

        local_reader, local_writer = await asyncio.open_connection("127.0.0.1", self.routes[host])
        try:
            await asyncio.gather(_pipe(reader, local_writer), _pipe(local_reader, writer))
        finally:
            local_writer.close()


async def _reject(writer: asyncio.StreamWriter, message: str) -> None:
    body = message.encode()
    writer.write(
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until `reader` ends, then close `writer` so the other direction ends too."""
    try:
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, ssl.SSLError, RuntimeError):
            writer.close()
