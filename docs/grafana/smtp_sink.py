#!/usr/bin/env python3
"""A local SMTP server that accepts every message and keeps none, so the service's notification outbox drains
while preview.sh drives it (without --smtp-url notifications only queue up).

    python3 smtp_sink.py PORT        listens on 127.0.0.1:PORT until stopped

Plain SMTP (no TLS, no login), one message per DATA; Python 3.11 standard library only.
"""

import asyncio
import sys

received = 0


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global received
    writer.write(b"220 localhost ESMTP sink\r\n")
    in_data = False
    try:
        while line := await reader.readline():
            if in_data:
                if line.rstrip(b"\r\n") == b".":
                    in_data = False
                    received += 1
                    writer.write(b"250 2.0.0 Ok: accepted\r\n")
                    await writer.drain()
                continue
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"HELO":
                writer.write(b"250 localhost\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                break
            else:  # MAIL, RCPT, RSET, NOOP
                writer.write(b"250 2.0.0 Ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(session, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
    finally:
        print(f"smtp sink: {received} messages", file=sys.stderr)
