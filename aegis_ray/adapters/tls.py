"""TLS of the orchestrator's APIs.

REST: Ray Serve's HTTP proxy serves HTTPS itself (`http_options` ssl_certfile / ssl_keyfile).
gRPC: Serve's gRPC proxy can do neither TLS nor a chosen interface (Ray 2.60 adds it with
`add_insecure_port("[::]:PORT")`, serve/_private/grpc_util.py), so with TLS it listens on an
internal port that an iptables rule keeps to loopback, and this module's front terminates TLS
on the public gRPC port and passes the bytes (HTTP/2, negotiated by ALPN) to it.

Run the front as `python -m aegis_ray.adapters.tls --listen HOST:PORT --backend PORT
--cert FILE --key FILE` (node/stack.py starts and stops it as a daemon).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import stat
from pathlib import Path

_CHUNK = 65536


class TlsConfigError(ValueError):
    pass


def server_context(
    cert_file: Path, key_file: Path, *, field: str = "spec.api.tls"
) -> ssl.SSLContext:
    """A server context for this certificate and key; TlsConfigError names the field and file
    when one is missing, unreadable, not private (the key) or not a matching PEM pair."""
    for name, path in (("cert_file", cert_file), ("key_file", key_file)):
        if not path.is_file():
            raise TlsConfigError(f"{field}.{name}: {path}: no such file")
    mode = stat.S_IMODE(key_file.stat().st_mode)
    if mode & 0o077:
        raise TlsConfigError(
            f"{field}.key_file: {key_file}: mode {mode:04o} lets other users read it; "
            f"`chmod 600 {key_file}`"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as err:
        raise TlsConfigError(
            f"{field}: {cert_file} and {key_file} are not a PEM certificate and its key: {err}"
        ) from None
    return ctx


def check_ca_file(ca_file: Path, *, field: str) -> None:
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as err:
        raise TlsConfigError(f"{field}: {ca_file}: not a readable PEM CA file: {err}") from None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _serve(listen: tuple[str, int], backend: int, ctx: ssl.SSLContext) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", backend)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(handle, listen[0], listen[1], ssl=ctx)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TLS front of Serve's gRPC proxy")
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--backend", required=True, type=int, help="Serve's gRPC port")
    parser.add_argument("--cert", required=True, type=Path)
    parser.add_argument("--key", required=True, type=Path)
    args = parser.parse_args(argv)
    ctx = server_context(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])  # gRPC clients insist on HTTP/2 by ALPN
    host, _, port = args.listen.rpartition(":")
    asyncio.run(_serve((host, int(port)), args.backend, ctx))


if __name__ == "__main__":
    main()
