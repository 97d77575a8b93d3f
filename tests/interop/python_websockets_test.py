#!/usr/bin/env python3
"""Interop: the Python `websockets` library (Debian python3-websockets) against atoll-ws-echo.

Usage: python_websockets_test.py --ws-echo PATH/TO/atoll-ws-echo

Positive: text/binary echo at every length encoding boundary (0, 125, 126, 65535, 65536,
1 MiB), fragmented sends, ping/pong, close codes echoed; each with permessage-deflate off and
on (server started with --deflate, client offering compression).
Negative, with raw sockets: malformed handshakes get their HTTP status; protocol violations
get their close code (1002, 1007, 1009) and then the TCP close.

Everything is on loopback, every wait has a timeout, and the whole run is bounded by an alarm.
Exit status: 0 pass, 1 fail, 77 skipped (websockets not installed).
"""

import argparse
import asyncio
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover
    print("SKIP: python3 module 'websockets' is missing (Debian: python3-websockets)")
    sys.exit(77)

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
TIMEOUT = 10  # seconds, for any single wait
failures = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


class echo_server:
    """atoll-ws-echo on 127.0.0.1, any port; stopped with SIGTERM (graceful drain)."""

    def __init__(self, binary, *flags):
        self.proc = subprocess.Popen([binary, "--port", "0", "--threads", "2", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = b""
        deadline = time.monotonic() + TIMEOUT
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                ch = os.read(self.proc.stdout.fileno(), 1)  # unbuffered: select stays true
                if not ch:
                    break
                line += ch
        text = line.decode().strip()
        if not text.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError("atoll-ws-echo did not start: %r" % text)
        self.host, port = text[len("listening on "):].rsplit(":", 1)
        self.port = int(port)
        self.url = "ws://%s:%d/interop" % (self.host, self.port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = "hung"
        check(code == 0, "atoll-ws-echo stops gracefully on SIGTERM (exit %s)" % code)


def payloads(n):
    rnd = random.Random(n)
    # Random letters: the echoes are checked byte for byte, so they should not be trivial.
    text = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzäöü€ ") for _ in range(n))
    data = rnd.randbytes(n)
    return text, data


# ---- positive interop with the websockets client ------------------------------------------

async def positive(server, deflate, offer=None):
    """`deflate`: whether compression is expected; `offer`: whether the client offers it
    (default: the same)."""
    offer = deflate if offer is None else offer
    tag = ("deflate" if deflate else "plain") + (" offered" if offer and not deflate else "")
    compression = "deflate" if offer else None
    async with websockets.connect(server.url, compression=compression, max_size=None,
                                  open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                                  ping_interval=None) as ws:
        negotiated = bool(ws.extensions)
        check(negotiated == deflate, "[%s] permessage-deflate negotiated: %s" % (tag, negotiated))
        for n in SIZES:
            text, data = payloads(n)
            await ws.send(text)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            check(isinstance(got, str) and got == text, "[%s] text echo of %d chars" % (tag, n))
            await ws.send(data)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            check(isinstance(got, bytes) and got == data, "[%s] binary echo of %d bytes" % (tag, n))

        # Fragmented sends: an iterable is sent as one message in several frames.
        await ws.send(["frag", "men", "ted ", "é" * 1000])
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(got == "fragmented " + "é" * 1000, "[%s] fragmented text message" % tag)
        tail = random.Random(3).randbytes(70000)
        await ws.send([b"\x00\x01", b"", tail])
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(got == b"\x00\x01" + tail, "[%s] fragmented binary message" % tag)

        # Ping: the pong carries the same payload (websockets matches it to the waiter).
        for payload in (b"", b"atoll", bytes(range(125))):
            waiter = await ws.ping(payload)
            try:
                await asyncio.wait_for(waiter, TIMEOUT)
                ok = True
            except asyncio.TimeoutError:
                ok = False
            check(ok, "[%s] ping with %d bytes answered" % (tag, len(payload)))
        await ws.pong(b"unsolicited")
        await ws.send("after pong")
        check(await asyncio.wait_for(ws.recv(), TIMEOUT) == "after pong",
              "[%s] unsolicited pong ignored" % tag)

    # Close codes: the server echoes the code and closes TCP.
    for code in (1000, 1001, 1003, 1007, 1008, 1011, 3000, 4000, 4999):
        async with websockets.connect(server.url, compression=compression,
                                      open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                                      ping_interval=None) as ws:
            await ws.send("bye")
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            await ws.close(code, "reason %d" % code)
            check(ws.close_code == code, "[%s] close code %d echoed (got %s)"
                  % (tag, code, ws.close_code))


async def oversize(server):
    # Server started with --max-message-size 1000: a bigger message gets 1009.
    async with websockets.connect(server.url, open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                                  ping_interval=None) as ws:
        await ws.send("x" * 1000)
        check(await asyncio.wait_for(ws.recv(), TIMEOUT) == "x" * 1000,
              "message at --max-message-size echoed")
        await ws.send("x" * 1001)
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
            code = None
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        check(code == 1009, "message over --max-message-size closed with 1009 (got %s)" % code)


# ---- negative interop with raw sockets -----------------------------------------------------

def raw_connect(server):
    s = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    s.settimeout(TIMEOUT)
    return s


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def read_until_eof(s, buf=b""):
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return buf, True
            buf += chunk
    except (ConnectionResetError, BrokenPipeError):
        return buf, True
    except socket.timeout:
        return buf, False


GOOD = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def handshake_cases():
    return [
        ("valid upgrade", "GET / HTTP/1.1\r\nHost: h\r\n" + GOOD + "\r\n", 101),
        ("POST", "POST / HTTP/1.1\r\nHost: h\r\n" + GOOD + "\r\n", 405),
        ("version 8", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", 426),
        ("no version", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426),
        ("no key", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\n\r\n", 400),
        ("bad key", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: notbase64\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        ("no Upgrade header", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        ("no Connection: upgrade", "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
        ("no Host", "GET / HTTP/1.1\r\n" + GOOD + "\r\n", 400),
        ("HTTP/1.0", "GET / HTTP/1.0\r\nHost: h\r\n" + GOOD + "\r\n", 400),
        ("bare LF", "GET / HTTP/1.1\nHost: h\n\n", 400),
        ("31 KiB of headers", "GET / HTTP/1.1\r\nHost: h\r\n" + GOOD
         + "".join("X-Pad-%d: %s\r\n" % (i, "a" * 1000) for i in range(31)) + "\r\n", 431),
        ("TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    ]


def negative_handshakes(server):
    for name, request, status in handshake_cases():
        s = raw_connect(server)
        try:
            s.sendall(request.encode("latin-1"))
            head, _ = read_head(s)
            got = int(head.split(" ", 2)[1]) if head.startswith("HTTP/1.1 ") else None
            ok = got == status
            if status == 426:
                ok = ok and "\r\nSec-WebSocket-Version: 13" in head
            if status != 101:
                _, eof = read_until_eof(s)
                ok = ok and eof
            check(ok, "handshake %s -> %d (got %s)" % (name, status, got))
        finally:
            s.close()


def frame(opcode, payload=b"", fin=True, rsv=0, masked=True, length=None):
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", b0, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def parse_close(buf):
    """The code of the first server frame if it is a close frame, else None."""
    if len(buf) < 2 or buf[0] & 0x0F != 0x8:
        return None
    n = buf[1] & 0x7F
    if n == 0:
        return 1005
    return struct.unpack("!H", buf[2:4])[0]


def violation_cases():
    return [
        ("unmasked frame", frame(0x1, b"hi", masked=False), 1002),
        ("RSV1 without extension", frame(0x1, b"hi", rsv=4), 1002),
        ("RSV2", frame(0x2, b"hi", rsv=2), 1002),
        ("reserved opcode 0x3", frame(0x3, b"x"), 1002),
        ("reserved control opcode 0xB", frame(0xB, b""), 1002),
        ("continuation without a message", frame(0x0, b"x"), 1002),
        ("new message inside a fragmented one", frame(0x1, b"a", fin=False) + frame(0x1, b"b"),
         1002),
        ("fragmented ping", frame(0x9, b"", fin=False), 1002),
        ("ping over 125 bytes", frame(0x9, b"p" * 126), 1002),
        ("close with 1 byte", frame(0x8, b"\x03"), 1002),
        ("close code 1005", frame(0x8, struct.pack("!H", 1005)), 1002),
        ("close code 999", frame(0x8, struct.pack("!H", 999)), 1002),
        ("close code 5000", frame(0x8, struct.pack("!H", 5000)), 1002),
        ("close reason not UTF-8", frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),
        ("text not UTF-8", frame(0x1, b"ok\xc0\xafok"), 1007),
        ("UTF-8 surrogate", frame(0x1, b"\xed\xa0\x80"), 1007),
        ("non-minimal length", struct.pack("!BBH", 0x81, 0xFE, 5) + b"\0\0\0\0hello", 1002),
    ]


def handshake(s):
    s.sendall(("GET / HTTP/1.1\r\nHost: h\r\n" + GOOD + "\r\n").encode())
    head, rest = read_head(s)
    return head.startswith("HTTP/1.1 101"), rest


def negative_violations(server, big_server):
    for name, data, code in violation_cases():
        s = raw_connect(server)
        try:
            ok, rest = handshake(s)
            s.sendall(data)
            buf, eof = read_until_eof(s, rest)
            got = parse_close(buf)
            check(ok and got == code and eof, "violation %s -> close %d (got %s, tcp closed %s)"
                  % (name, code, got, eof))
        finally:
            s.close()

    # Fail fast: invalid UTF-8 announced in a 1 MiB frame is refused after the bad byte, with
    # the rest of the frame never sent.
    s = raw_connect(server)
    try:
        ok, rest = handshake(s)
        partial = frame(0x1, b"abc\xff" + b"a" * 100, length=1 << 20)
        s.sendall(partial)
        buf, eof = read_until_eof(s, rest)
        check(ok and parse_close(buf) == 1007 and eof,
              "invalid UTF-8 fails fast with 1007 before the frame ends (got %s)"
              % parse_close(buf))
    finally:
        s.close()

    # Oversize: a frame header announcing more than --max-message-size is refused at once.
    s = raw_connect(big_server)
    try:
        ok, rest = handshake(s)
        s.sendall(frame(0x2, b"", length=1 << 20)[:14])
        buf, eof = read_until_eof(s, rest)
        check(ok and parse_close(buf) == 1009 and eof,
              "frame header over the limit -> 1009 (got %s)" % parse_close(buf))
    finally:
        s.close()


async def large(server):
    """Issue 9, items 6 and 7: one message far above max_write_buffer (4 MiB) goes out whole,
    and highly compressible text within max_message_size is not refused by a ratio cap."""
    async with websockets.connect(server.url, compression="deflate", max_size=None,
                                  open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                                  ping_interval=None) as ws:
        text = "a" * (1 << 20)  # ~1000:1 compressed
        await ws.send(text)
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(got == text, "[large] 1 MiB of one letter (deflate) echoed")
        data = bytes(range(256)) * (16 * 4096)  # 16 MiB
        await ws.send(data)
        got = await asyncio.wait_for(ws.recv(), 4 * TIMEOUT)
        check(got == data, "[large] one 16 MiB binary message echoed whole")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ws-echo", required=True)
    args = parser.parse_args()
    signal.alarm(240)  # the whole run, whatever hangs

    plain = echo_server(args.ws_echo)
    deflate = echo_server(args.ws_echo, "--deflate")
    small = echo_server(args.ws_echo, "--max-message-size", "1000")
    big = echo_server(args.ws_echo, "--deflate", "--max-message-size", "67108864")
    try:
        asyncio.run(positive(plain, deflate=False))
        asyncio.run(positive(deflate, deflate=True))
        # A compressing client against a server without --deflate: no extension, still works.
        asyncio.run(positive(plain, deflate=False, offer=True))
        asyncio.run(oversize(small))
        asyncio.run(large(big))
        negative_handshakes(plain)
        negative_violations(plain, small)
    finally:
        for server in (plain, deflate, small, big):
            server.stop()

    if failures:
        print("%d FAILED:\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
