"""A deliberately small STUN/TURN client helper for the end-to-end tests.

It builds requests (optionally with long-term credentials: MESSAGE-INTEGRITY
over HMAC-SHA1 keyed with MD5(user:realm:password), RFC 8489 §9.2), parses
responses, and runs UDP transactions with retransmission. It is not a
general-purpose library: only what the tests need, written to be read.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

MAGIC_COOKIE = 0x2112A442

# Methods (RFC 8489, RFC 8656)
BINDING = 0x001
ALLOCATE = 0x003
REFRESH = 0x004
SEND = 0x006
DATA = 0x007
CREATE_PERMISSION = 0x008
CHANNEL_BIND = 0x009
CONNECT = 0x00A            # RFC 6062
CONNECTION_BIND = 0x00B
CONNECTION_ATTEMPT = 0x00C

# Classes
REQUEST, INDICATION, SUCCESS, ERROR = 0, 1, 2, 3

# Attributes
MAPPED_ADDRESS = 0x0001
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTR = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_TRANSPORT = 0x0019
XOR_MAPPED_ADDRESS = 0x0020
SOFTWARE = 0x8022
FINGERPRINT = 0x8028
UNKNOWN_ATTRIBUTES = 0x000A
REQUESTED_ADDRESS_FAMILY = 0x0017
ADDITIONAL_ADDRESS_FAMILY = 0x8000

UDP_TRANSPORT = 17
TCP_TRANSPORT = 6
CONNECTION_ID = 0x002A     # RFC 6062


def _encode_type(method: int, cls: int) -> int:
    # The class bits C1 C0 sit at bits 8 and 4 of the 14-bit type.
    return ((method & 0xF80) << 2) | ((method & 0x070) << 1) | (method & 0x00F) \
        | ((cls & 2) << 7) | ((cls & 1) << 4)


def _decode_type(t: int) -> tuple[int, int]:
    method = ((t & 0x3E00) >> 2) | ((t & 0x00E0) >> 1) | (t & 0x000F)
    cls = ((t >> 7) & 2) | ((t >> 4) & 1)
    return method, cls


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


def encode_xor_address(addr: tuple[str, int], txid: bytes) -> bytes:
    ip = ipaddress.ip_address(addr[0])
    port = addr[1] ^ (MAGIC_COOKIE >> 16)
    mask = struct.pack("!I", MAGIC_COOKIE) + (txid if ip.version == 6 else b"")
    raw = bytes(a ^ b for a, b in zip(ip.packed, mask))
    return struct.pack("!BBH", 0, 1 if ip.version == 4 else 2, port) + raw


def decode_xor_address(value: bytes, txid: bytes) -> tuple[str, int]:
    family, port = value[1], struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
    size = 4 if family == 1 else 16
    mask = struct.pack("!I", MAGIC_COOKIE) + txid
    raw = bytes(a ^ b for a, b in zip(value[4:4 + size], mask))
    return str(ipaddress.ip_address(raw)), port


def long_term_key(username: str, realm: str, password: str) -> bytes:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def rest_credentials(secret: str, user: str, ttl: int = 3600) -> tuple[str, str]:
    """TURN REST API (draft-uberti-behave-turn-rest): username is
    "<expiry-unix-time>:<user>", password is base64(HMAC-SHA1(secret, username))."""
    username = f"{int(time.time()) + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


@dataclass
class Message:
    method: int
    cls: int = REQUEST
    txid: bytes = field(default_factory=lambda: os.urandom(12))
    attrs: list[tuple[int, bytes]] = field(default_factory=list)
    raw: bytes = b""

    def add(self, atype: int, value: bytes) -> "Message":
        self.attrs.append((atype, value))
        return self

    def get(self, atype: int) -> bytes | None:
        for t, v in self.attrs:
            if t == atype:
                return v
        return None

    # -- convenience accessors -------------------------------------------
    @property
    def error_code(self) -> int | None:
        v = self.get(ERROR_CODE)
        return None if v is None else (v[2] & 0x7) * 100 + v[3]

    @property
    def error_reason(self) -> str:
        v = self.get(ERROR_CODE)
        return "" if v is None else v[4:].decode(errors="replace")

    def xor_address(self, atype: int) -> tuple[str, int] | None:
        v = self.get(atype)
        return None if v is None else decode_xor_address(v, self.txid)

    # -- wire format -------------------------------------------------------
    def encode(self, key: bytes | None = None, fingerprint: bool = False,
               tamper_integrity: bool = False) -> bytes:
        body = b""
        for t, v in self.attrs:
            body += struct.pack("!HH", t, len(v)) + v + b"\0" * _pad4(len(v))

        def header(length: int) -> bytes:
            return struct.pack("!HHI", _encode_type(self.method, self.cls), length,
                               MAGIC_COOKIE) + self.txid

        if key is not None:
            # The length in the header covers MESSAGE-INTEGRITY itself (24 bytes).
            mac = hmac.new(key, header(len(body) + 24) + body, hashlib.sha1).digest()
            if tamper_integrity:  # hostile-input tests: one flipped bit
                mac = bytes([mac[0] ^ 0x01]) + mac[1:]
            body += struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
        if fingerprint:
            crc = zlib.crc32(header(len(body) + 8) + body) ^ 0x5354554E
            body += struct.pack("!HHI", FINGERPRINT, 4, crc)
        return header(len(body)) + body


def parse(data: bytes) -> Message:
    if len(data) < 20:
        raise ValueError("short STUN message")
    t, length, cookie = struct.unpack("!HHI", data[:8])
    if t & 0xC000 or cookie != MAGIC_COOKIE or len(data) < 20 + length:
        raise ValueError("not a STUN message")
    method, cls = _decode_type(t)
    msg = Message(method, cls, data[8:20], raw=data[:20 + length])
    pos = 20
    while pos + 4 <= 20 + length:
        at, alen = struct.unpack("!HH", data[pos:pos + 4])
        msg.attrs.append((at, data[pos + 4:pos + 4 + alen]))
        pos += 4 + alen + _pad4(alen)
    return msg


def verify_integrity(msg: Message, key: bytes) -> bool:
    """Check MESSAGE-INTEGRITY of a parsed message against key."""
    data, pos = msg.raw, 20
    while pos + 4 <= len(data):
        at, alen = struct.unpack("!HH", data[pos:pos + 4])
        if at == MESSAGE_INTEGRITY:
            hdr = data[:2] + struct.pack("!H", pos - 20 + 24) + data[4:20]
            mac = hmac.new(key, hdr + data[20:pos], hashlib.sha1).digest()
            return hmac.compare_digest(mac, data[pos + 4:pos + 24])
        pos += 4 + alen + _pad4(alen)
    return False


def udp_socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def transact(sock: socket.socket, server: tuple[str, int], data: bytes, txid: bytes,
             timeout: float = 3.0) -> Message | None:
    """Send a request and wait for the response with this txid, retransmitting
    (RTO 100 ms, doubling, capped at 800 ms) until `timeout` seconds pass."""
    deadline, rto = time.monotonic() + timeout, 0.1
    while time.monotonic() < deadline:
        sock.sendto(data, server)
        until = min(deadline, time.monotonic() + rto)
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply, _ = sock.recvfrom(65535)
            except socket.timeout:
                break
            except OSError:  # ICMP port unreachable while the server starts
                time.sleep(min(0.05, max(0.0, until - time.monotonic())))
                break
            try:
                msg = parse(reply)
            except ValueError:
                continue
            if msg.txid == txid:
                return msg
        rto = min(rto * 2, 0.8)
    return None


def binding(server: tuple[str, int], timeout: float = 1.0,
            sock: socket.socket | None = None) -> tuple[str, int] | None:
    """STUN Binding request; returns XOR-MAPPED-ADDRESS or None on timeout."""
    own = sock is None
    sock = sock or udp_socket(server[0])
    try:
        req = Message(BINDING)
        resp = transact(sock, server, req.encode(), req.txid, timeout)
        if resp is None or resp.cls != SUCCESS:
            return None
        return resp.xor_address(XOR_MAPPED_ADDRESS)
    finally:
        if own:
            sock.close()


class TurnClient:
    """One UDP TURN client doing the long-term-credential dance by hand."""

    def __init__(self, server: tuple[str, int], username: str, password: str):
        self.server, self.username, self.password = server, username, password
        self.sock = udp_socket(server[0])
        self.realm = self.nonce = None
        self.key: bytes | None = None

    def close(self) -> None:
        self.sock.close()

    def request(self, method: int, attrs, timeout: float = 3.0) -> Message:
        """Send an authenticated request; on 401/438 learn REALM/NONCE and retry once.

        attrs is a list of (type, value), or a callable taking the transaction
        ID and returning one (XOR-PEER-ADDRESS of an IPv6 peer depends on it)."""
        for attempt in range(2):
            msg = Message(method)
            msg.attrs = list(attrs(msg.txid) if callable(attrs) else attrs)
            if self.key is not None:
                msg.add(USERNAME, self.username.encode())
                msg.add(REALM, self.realm).add(NONCE, self.nonce)
            resp = self._transact(msg.encode(self.key, fingerprint=True), msg.txid, timeout)
            if resp is None:
                raise TimeoutError(f"no response to method {method:#x} from {self.server}")
            if resp.cls == ERROR and resp.error_code in (401, 438) and attempt == 0 \
                    and resp.get(NONCE) is not None:
                self.nonce = resp.get(NONCE)
                self.realm = resp.get(REALM) or self.realm
                self.key = long_term_key(self.username, self.realm.decode(), self.password)
                continue
            return resp
        return resp

    def _transact(self, data: bytes, txid: bytes, timeout: float) -> Message | None:
        return transact(self.sock, self.server, data, txid, timeout)

    def _send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server)

    def allocate(self, lifetime: int = 600, family: int | None = None,
                 additional_family: int | None = None) -> Message:
        """family: REQUESTED-ADDRESS-FAMILY (1 IPv4, 2 IPv6); additional_family:
        ADDITIONAL-ADDRESS-FAMILY (2: dual allocation, RFC 8656 §7.2)."""
        attrs = [(REQUESTED_TRANSPORT, bytes([UDP_TRANSPORT, 0, 0, 0])),
                 (LIFETIME, struct.pack("!I", lifetime))]
        if family is not None:
            attrs.append((REQUESTED_ADDRESS_FAMILY, bytes([family, 0, 0, 0])))
        if additional_family is not None:
            attrs.append((ADDITIONAL_ADDRESS_FAMILY, bytes([additional_family, 0, 0, 0])))
        return self.request(ALLOCATE, attrs)

    def create_permission(self, peer: tuple[str, int]) -> Message:
        # XOR-PEER-ADDRESS of an IPv6 peer depends on the transaction ID, which
        # request() picks per attempt, hence the callable.
        return self.request(CREATE_PERMISSION,
                            lambda txid: [(XOR_PEER_ADDRESS, encode_xor_address(peer, txid))])

    def refresh(self, lifetime: int) -> Message:
        return self.request(REFRESH, [(LIFETIME, struct.pack("!I", lifetime))])

    def channel_bind(self, channel: int, peer: tuple[str, int]) -> Message:
        return self.request(CHANNEL_BIND, lambda txid: [
            (CHANNEL_NUMBER, struct.pack("!HH", channel, 0)),
            (XOR_PEER_ADDRESS, encode_xor_address(peer, txid)),
        ])

    def signed(self, method: int, attrs: list[tuple[int, bytes]], *,
               tamper_integrity: bool = False, nonce: bytes | None = None) -> Message:
        """A request carrying USERNAME/REALM/NONCE and MESSAGE-INTEGRITY under the
        key learnt earlier, not sent: msg.raw holds the bytes (hostile tests
        alter them). Needs a prior request() that was challenged."""
        assert self.key is not None, "no REALM/NONCE learnt yet"
        msg = Message(method, attrs=list(attrs))
        msg.add(USERNAME, self.username.encode()).add(REALM, self.realm)
        msg.add(NONCE, self.nonce if nonce is None else nonce)
        msg.raw = msg.encode(self.key, fingerprint=True, tamper_integrity=tamper_integrity)
        return msg

    def send_indication(self, peer: tuple[str, int], payload: bytes) -> None:
        """Send indication (RFC 8656 §11.4): never answered."""
        msg = Message(SEND, INDICATION)
        msg.add(XOR_PEER_ADDRESS, encode_xor_address(peer, msg.txid)).add(DATA_ATTR, payload)
        self._send(msg.encode())

    def send_channel_data(self, channel: int, payload: bytes) -> None:
        # Over UDP the padding to 4 bytes is optional (RFC 8656 §12.5); send none.
        self._send(struct.pack("!HH", channel, len(payload)) + payload)

    def recv_channel_data(self, timeout: float = 2.0) -> tuple[int, bytes]:
        """Next ChannelData frame from the server (STUN messages are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            data, _ = self.sock.recvfrom(65535)
            if len(data) >= 4 and 0x40 <= data[0] <= 0x7F:
                channel, length = struct.unpack("!HH", data[:4])
                return channel, data[4:4 + length]
        raise TimeoutError("no ChannelData from the server")


def frame_length(buf: bytes) -> int | None:
    """Bytes the first frame of a TURN byte stream takes (RFC 8656 §12.5:
    ChannelData padded to 4 over streams), or None if more are needed."""
    if len(buf) < 4:
        return None
    length = struct.unpack("!H", buf[2:4])[0]
    if buf[0] < 0x40:
        total = 20 + length
    elif buf[0] < 0x80:
        total = 4 + length + _pad4(length)
    else:
        raise ValueError(f"not STUN or ChannelData: first byte {buf[0]:#x}")
    return total if len(buf) >= total else None


class StreamTurnClient(TurnClient):
    """TurnClient over TCP, or TLS (`tls=True`, any certificate accepted):
    the same requests, framed on a byte stream."""

    def __init__(self, server: tuple[str, int], username: str, password: str, *,
                 tls: bool = False, alpn: list[str] | None = None, timeout: float = 5.0):
        import ssl
        self.server, self.username, self.password = server, username, password
        self.realm = self.nonce = None
        self.key = None
        raw = socket.create_connection(server, timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            if alpn:
                ctx.set_alpn_protocols(alpn)
            self.sock = ctx.wrap_socket(raw)
        else:
            self.sock = raw
        self.buffer = b""

    def _send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_frame(self, timeout: float = 3.0) -> bytes:
        """The next frame (a ChannelData frame keeps its padding). Raises
        TimeoutError, or ConnectionError when the server closes."""
        deadline = time.monotonic() + timeout
        while (n := frame_length(self.buffer)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole frame from the server")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no whole frame from the server") from None
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        frame, self.buffer = self.buffer[:n], self.buffer[n:]
        return frame

    def _transact(self, data: bytes, txid: bytes, timeout: float) -> Message | None:
        self.sock.sendall(data)  # a stream needs no retransmission
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.read_frame(left)
            except TimeoutError:
                return None
            if frame[0] < 0x40:
                msg = parse(frame)
                if msg.txid == txid:
                    return msg
        return None

    def send_channel_data(self, channel: int, payload: bytes) -> None:
        pad = b"\0" * _pad4(len(payload))
        self._send(struct.pack("!HH", channel, len(payload)) + payload + pad)

    def recv_channel_data(self, timeout: float = 2.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.read_frame(left)
            if 0x40 <= frame[0] <= 0x7F:
                channel, length = struct.unpack("!HH", frame[:4])
                return channel, frame[4:4 + length]
        raise TimeoutError("no ChannelData from the server")


# --------------------------------------------------------------------------
# Helpers for the hostile-input, fault and soak tests (Linux /proc probes,
# a threaded echo peer). Every loop here is bounded in count and time.

def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    """Open file descriptors of a process (/proc/PID/fd)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def recv_nowait(sock: socket.socket, bufsize: int = 65535) -> bytes | None:
    """One datagram if one is queued, else None, whatever the socket's timeout
    mode (a socket with a timeout would wait for it even with MSG_DONTWAIT).
    OSError (a queued ICMP error) propagates."""
    old = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.recv(bufsize)
    except (BlockingIOError, InterruptedError):
        return None
    finally:
        sock.settimeout(old)


def relay_port_closed(relayed: tuple[str, int], timeout: float = 4) -> bool:
    """Whether the relay port stops accepting datagrams (ICMP port unreachable)."""
    probe = udp_socket("127.0.0.1")
    probe.connect(relayed)

    def refused() -> bool:
        try:
            probe.send(b"x")
            time.sleep(0.05)
            probe.send(b"x")
        except ConnectionRefusedError:
            return True
        return False
    try:
        return wait_until(refused, timeout)
    finally:
        probe.close()


def wait_until(pred, timeout: float, step: float = 0.05) -> bool:
    """Poll pred() until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


class EchoPeer:
    """A UDP echo peer on its own thread: echoes every datagram to its sender
    and counts what it got. Stops at close() or after max_seconds."""

    def __init__(self, host: str = "127.0.0.1", echo: bool = True, max_seconds: float = 300.0):
        import threading
        self.sock = udp_socket(host)
        self.addr: tuple[str, int] = self.sock.getsockname()[:2]
        self.echo = echo
        self.received = 0
        self.sources: set[tuple[str, int]] = set()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            for _ in range(256):  # drain what is queued, bounded (the socket is blocking, no timeout)
                try:
                    data, src = self.sock.recvfrom(65535, socket.MSG_DONTWAIT)
                except (BlockingIOError, OSError):
                    break
                self.received += 1
                self.sources.add(src[:2])
                if self.echo:
                    try:
                        self.sock.sendto(data, src)
                    except OSError:
                        pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def wait_ready(proc, addrs: list[tuple[str, int]], timeout: float) -> str | None:
    """Wait until a started server answers a Binding on every address.
    Returns None when ready, else why not (exited / timed out)."""
    deadline = time.monotonic() + timeout
    pending = list(addrs)
    while pending:
        if proc.poll() is not None:
            return f"exited with status {proc.returncode}"
        if time.monotonic() > deadline:
            return f"no Binding answer on {pending[0]} within {timeout:.0f}s"
        if binding(pending[0], timeout=0.3) is not None:
            pending.pop(0)
    return None


def transact_many(pending: dict[bytes, tuple[socket.socket, bytes]], server: tuple[str, int],
                  timeout: float = 5.0, rounds: int = 4) -> dict[bytes, Message]:
    """Pipelined transactions: pending maps txid -> (socket, request bytes).
    Sends every request, collects answers by txid from all the sockets, and
    resends the unanswered ones (at most `rounds` times, within `timeout`).
    Non-STUN datagrams (ChannelData) arriving meanwhile are skipped."""
    import select
    answers: dict[bytes, Message] = {}
    todo = dict(pending)
    socks = list({id(s): s for s, _ in todo.values()}.values())
    deadline = time.monotonic() + timeout
    for n in range(rounds):
        if not todo or time.monotonic() >= deadline:
            break
        for s, raw in todo.values():
            s.sendto(raw, server)
        until = min(deadline, time.monotonic() + 0.25 * (2 ** n))
        while todo and (left := until - time.monotonic()) > 0:
            ready, _, _ = select.select(socks, [], [], left)
            for s in ready:
                for _ in range(256):
                    try:
                        data = recv_nowait(s)
                    except OSError:  # ICMP error queued on the socket
                        continue
                    if data is None:
                        break
                    try:
                        msg = parse(data)
                    except ValueError:
                        continue
                    if todo.pop(msg.txid, None) is not None:
                        answers[msg.txid] = msg
    return answers
