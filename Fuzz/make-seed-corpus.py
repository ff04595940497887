#!/usr/bin/env python3
"""Writes the seed corpus in Fuzz/corpus/stun/: the RFC 5769 vectors, the
RFC 8489 B.1 vector (erratum 6268 form) and small TURN messages of each kind
the server sees, with valid MESSAGE-INTEGRITY (key = the RFC 5769 short-term
password, the key the fuzz target verifies with) and FINGERPRINT.
Run once; the output is checked in."""
import hashlib, hmac, os, struct, zlib

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "stun")
KEY = b"VOkJxbRl1RmTxUk/WvJxBt"
COOKIE = 0x2112A442
TID = bytes.fromhex("0102030405060708090a0b0c")


def h(s):
    return bytes.fromhex("".join(s.split()))


def tlv(t, v, pad=b"\0"):
    return struct.pack("!HH", t, len(v)) + v + pad * ((4 - len(v) % 4) % 4)


def xaddr(ip4, port):
    return struct.pack("!BBHI", 0, 1, port ^ (COOKIE >> 16), ip4 ^ COOKIE)


def xaddr6(ip16, port):
    key = struct.pack("!I", COOKIE) + TID
    return struct.pack("!BBH", 0, 2, port ^ (COOKIE >> 16)) + bytes(a ^ b for a, b in zip(ip16, key))


def message(mtype, attrs, integrity=True, fingerprint=True):
    body = b"".join(attrs)
    if integrity:
        head = struct.pack("!HHI", mtype, len(body) + 24, COOKIE) + TID
        body += tlv(0x0008, hmac.new(KEY, head + body, hashlib.sha1).digest())
    if fingerprint:
        head = struct.pack("!HHI", mtype, len(body) + 8, COOKIE) + TID
        crc = (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
        body += tlv(0x8028, struct.pack("!I", crc))
    return struct.pack("!HHI", mtype, len(body), COOKIE) + TID + body


seeds = {
    "rfc5769-request": h("""00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74 00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36 00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2 80 28 00 04 e5 7a 3b cf"""),
    "rfc5769-ipv4-response": h("""01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20 00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7 80 28 00 04 c0 7d 4c 96"""),
    "rfc5769-ipv6-response": h("""01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41 80 28 00 04 c8 fb 0b 4c"""),
    "rfc5769-long-term": h("""00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66"""),
    "rfc8489-b1-erratum": h("""00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f 24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04
        00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33
        34 6f 4c 39 46 53 54 76 79 36 34 73 41 00 00 00 00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 1d 00 04 00 02 00 00 00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24
        13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65"""),
    "allocate-request": message(0x0003, [
        tlv(0x0019, struct.pack("!I", 17 << 24)), tlv(0x000D, struct.pack("!I", 600)),
        tlv(0x0006, b"alice"), tlv(0x0014, b"example.org"), tlv(0x0015, b"nonce-123"),
        tlv(0x0018, b"\x80"), tlv(0x001A, b""), tlv(0x8000, struct.pack("!I", 2 << 24))]),
    "allocate-success-dual": message(0x0103, [
        tlv(0x0016, xaddr(0xC0000201, 50000)), tlv(0x0016, xaddr6(bytes.fromhex("20010db8000000000000000000000001"), 50001)),
        tlv(0x0020, xaddr(0xC6336407, 40000)), tlv(0x000D, struct.pack("!I", 600)),
        tlv(0x0022, bytes(range(8))), tlv(0x8022, b"uturn")]),
    "unauthorized-401": message(0x0113, [
        tlv(0x0009, b"\0\0\x04\x01Unauthorized"), tlv(0x0014, b"example.org"), tlv(0x0015, b"obMatJos2AAACf"),
        tlv(0x8002, struct.pack("!HHHH", 2, 0, 1, 0)), tlv(0x000A, struct.pack("!HH", 0x7777, 0x0024)),
        tlv(0x8001, b"\x02\0\x04\x28Address Family not Supported")], integrity=False),
    "create-permission": message(0x0008, [
        tlv(0x0012, xaddr(0xC6336407, 0)), tlv(0x0012, xaddr6(bytes.fromhex("20010db8000000000000000000000099"), 0)),
        tlv(0x0006, b"alice"), tlv(0x0014, b"example.org"), tlv(0x0015, b"nonce-123")]),
    "channel-bind": message(0x0009, [
        tlv(0x000C, struct.pack("!I", 0x4001 << 16)), tlv(0x0012, xaddr(0xC6336407, 5000)),
        tlv(0x0006, b"alice"), tlv(0x0014, b"example.org"), tlv(0x0015, b"nonce-123")]),
    "send-indication": message(0x0016, [tlv(0x0012, xaddr(0xC6336407, 5000)), tlv(0x0013, b"hello peer")],
                               integrity=False, fingerprint=False),
    "data-indication-v6": message(0x0017, [
        tlv(0x0012, xaddr6(bytes.fromhex("20010db8000000000000000000000007"), 5)), tlv(0x0013, b"hi"),
        tlv(0x8004, struct.pack("!HBBI", 0, 3, 4, 1280))], integrity=False, fingerprint=False),
    "connect-tcp": message(0x000A, [tlv(0x0012, xaddr(0xC6336407, 80)), tlv(0x002A, struct.pack("!I", 77))]),
    "channeldata-udp": bytes.fromhex("40010005") + b"hello",
    "channeldata-tcp": bytes.fromhex("4fff0005") + b"hello\0\0\0",
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(seeds)} seeds to {OUT}")
