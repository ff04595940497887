"""A real browser through the server under test: headless Chromium (Debian's
chromium and chromium-driver, installed by scripts/install-deps).

One page on a tiny HTTP server on 127.0.0.1 (a secure context, so
getUserMedia is allowed) creates two RTCPeerConnections, A and B, with the
server under test as their only ICE server and iceTransportPolicy "relay":
every candidate is a TURN relayed address, so the only way between them is
through the relay. Each side adds Chromium's fake camera and microphone
(--use-fake-device-for-media-stream); A opens a data channel, sends MESSAGES
messages of assorted sizes (text and binary), B echoes each, and A checks
that every one came back intact and in order. Then getStats() on both sides
must show inbound-rtp audio and video packets received (at least
MIN_AUDIO_PACKETS / MIN_VIDEO_PACKETS each; the page waits for them up to
the deadline) and a selected candidate pair that is relay to relay, whose
local candidate reached the server over the transport under test
(relayProtocol udp, tcp or tls) and whose addresses are the server's relay
range.

Parametrized by the client transport (turn:...?transport=udp,
turn:...?transport=tcp, turns:...?transport=tcp) and by the kernel fast path
(uturnd with `--offload tc --offload-interface lo`, root only). With the fast
path and UDP, /metrics must show that the kernel carried the media:
Chromium binds a TURN channel for each peer, so its RTP travels as
ChannelData, which the program relays (uturn_offload_packets_total, both
directions). TCP and TLS clients stay in user space; there the session must
simply work.

The browser is driven over the W3C WebDriver protocol, spoken directly to
chromedriver with http.client (no Python dependency). chromedriver runs in a
process group of its own; at teardown the session is deleted, chromedriver
stopped by its PID and whatever is left of that group (Chromium's processes)
killed with it. Skipped when chromium or chromedriver is not installed.

TURNS: uturnd's certificate is self-signed (conftest.write_self_signed, for
CN=localhost, no subjectAltName), which Chromium refuses (the server logs
"alert certificate unknown" and ICE never gets a candidate). Chromium is
told to accept exactly that key with --ignore-certificate-errors-spki-list
(which needs --user-data-dir); its TURN/TLS sockets use the same certificate
verifier as pages. (--ignore-certificate-errors works too, but accepts any
certificate.)
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, USER, _stop, free_port, server_kind
from test_metrics import scrape_until, start_metrics_server

MESSAGES = 40
MIN_AUDIO_PACKETS = 50     # at least 1 s of 20 ms Opus frames
MIN_VIDEO_PACKETS = 30
DEADLINE = 45.0            # seconds per session, browser start to teardown

PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>uturn e2e</title></head>
<body>uturn browser e2e</body></html>"""

# Runs in the page (WebDriver "execute async script": the last argument is
# the callback). Returns a JSON-able summary, or {error: ...}.
SESSION_JS = r"""
const [iceServers, messages, minAudio, minVideo, deadlineMs, done] = arguments;
const t0 = performance.now();
const left = () => deadlineMs - (performance.now() - t0);
const log = [];
const note = (s) => log.push(Math.round(performance.now() - t0) + "ms " + s);
function until(what, check, intervalMs = 100) {
  return new Promise((resolve, reject) => {
    const tick = async () => {
      let v;
      try { v = await check(); } catch (e) { reject(e); return; }
      if (v) { resolve(v); return; }
      if (left() <= 0) { reject(new Error("deadline waiting for " + what)); return; }
      setTimeout(tick, intervalMs);
    };
    tick();
  });
}
async function statsOf(pc) {
  const out = [];
  (await pc.getStats()).forEach((s) => out.push(s));
  return out;
}
function inbound(stats, kind) {
  return stats.filter((s) => s.type === "inbound-rtp" && s.kind === kind)
              .reduce((n, s) => n + (s.packetsReceived || 0), 0);
}
function selectedPair(stats) {
  const byId = new Map(stats.map((s) => [s.id, s]));
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  if (!transport) return null;
  const pair = byId.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const pick = (c) => c && {type: c.candidateType, address: c.address, port: c.port,
                            protocol: c.protocol, relayProtocol: c.relayProtocol};
  return {state: pair.state, nominated: pair.nominated,
          local: pick(byId.get(pair.localCandidateId)),
          remote: pick(byId.get(pair.remoteCandidateId))};
}
function payload(i) {
  // Text and binary, 1 byte to ~12 kB (several SCTP chunks), content from i.
  if (i % 2 === 0) return "m" + i + ":" + "xyz\u00e9\u20ac".repeat((i * 37) % 500);
  const n = 1 + ((i * 997) % 12000);
  const a = new Uint8Array(n);
  for (let k = 0; k < n; k++) a[k] = (k * 31 + i) & 255;
  return a.buffer;
}
function same(a, b) {
  if (typeof a === "string" || typeof b === "string") return a === b;
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return false;
  return true;
}
(async () => {
  const config = {iceServers, iceTransportPolicy: "relay"};
  const a = new RTCPeerConnection(config), b = new RTCPeerConnection(config);
  const candidates = {a: [], b: []};
  const streams = [];
  try {
    a.onicecandidate = (e) => { if (e.candidate) { candidates.a.push(e.candidate.candidate); b.addIceCandidate(e.candidate); } };
    b.onicecandidate = (e) => { if (e.candidate) { candidates.b.push(e.candidate.candidate); a.addIceCandidate(e.candidate); } };
    a.oniceconnectionstatechange = () => note("A ice " + a.iceConnectionState);
    b.oniceconnectionstatechange = () => note("B ice " + b.iceConnectionState);
    const media = {audio: true, video: {width: 320, height: 240, frameRate: 15}};
    for (const pc of [a, b]) {
      const stream = await navigator.mediaDevices.getUserMedia(media);
      streams.push(stream);
      for (const track of stream.getTracks()) pc.addTrack(track, stream);
    }
    b.ondatachannel = (e) => {
      e.channel.binaryType = "arraybuffer";
      e.channel.onmessage = (m) => e.channel.send(m.data);
    };
    const channel = a.createDataChannel("echo", {ordered: true});
    channel.binaryType = "arraybuffer";
    const echoed = [];
    channel.onmessage = (m) => echoed.push(m.data);

    await a.setLocalDescription();
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription();
    await a.setRemoteDescription(b.localDescription);
    note("descriptions set");

    await until("data channel open", () => channel.readyState === "open");
    note("data channel open");
    for (let i = 0; i < messages; i++) channel.send(payload(i));
    await until("echoes", () => echoed.length >= messages);
    let intact = 0;
    const bad = [];
    for (let i = 0; i < messages; i++) {
      if (same(echoed[i], payload(i))) intact++; else bad.push(i);
    }
    note("echoes " + echoed.length + " intact " + intact);

    const enough = async () => {
      const sa = await statsOf(a), sb = await statsOf(b);
      const n = {a_audio: inbound(sa, "audio"), a_video: inbound(sa, "video"),
                 b_audio: inbound(sb, "audio"), b_video: inbound(sb, "video")};
      return (n.a_audio >= minAudio && n.b_audio >= minAudio &&
              n.a_video >= minVideo && n.b_video >= minVideo) ? n : null;
    };
    let received = null;
    try { received = await until("RTP packets", enough, 200); } catch (e) { note(String(e)); }
    const sa = await statsOf(a), sb = await statsOf(b);
    const count = (s) => ({audio: inbound(s, "audio"), video: inbound(s, "video")});
    note("done");
    done({ok: true, echoed: echoed.length, intact, bad, enough: received !== null,
          received: {a: count(sa), b: count(sb)},
          pairs: {a: selectedPair(sa), b: selectedPair(sb)},
          candidates, log});
  } catch (e) {
    done({ok: false, error: String(e), candidates, log,
          ice: {a: a.iceConnectionState, b: b.iceConnectionState}});
  } finally {
    a.close(); b.close();
    for (const s of streams) for (const t of s.getTracks()) t.stop();
  }
})();
"""


# --------------------------------------------------------------------------
# the page

class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def page_url():
    with serving_page() as url:
        yield url


# --------------------------------------------------------------------------
# the browser, over WebDriver

def _chromium() -> tuple[str, str]:
    browser = os.environ.get("UTURN_E2E_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    driver = os.environ.get("UTURN_E2E_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    for path, pkg in ((browser, "chromium"), (driver, "chromium-driver")):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} not installed (Debian package {pkg}; scripts/install-deps installs it)")
    return browser, driver


class WebDriver:
    """Just enough of the W3C WebDriver protocol, over http.client."""

    def __init__(self, port: int):
        self.port = port
        self.session: str | None = None

    def call(self, method: str, path: str, body=None, timeout: float = 30.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            reply = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        value = reply.get("value")
        if resp.status != 200:
            raise RuntimeError(f"WebDriver {method} {path}: HTTP {resp.status}: "
                               f"{json.dumps(value)[:2000]}")
        return value

    def new_session(self, binary: str, args: list[str]) -> None:
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": binary, "args": args},
        }}}
        self.session = self.call("POST", "/session", caps, timeout=30)["sessionId"]

    def s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def get(self, url: str) -> None:
        self.call("POST", self.s("/url"), {"url": url})

    def execute_async(self, script: str, args: list, timeout: float):
        self.call("POST", self.s("/timeouts"), {"script": int(timeout * 1000)})
        return self.call("POST", self.s("/execute/async"), {"script": script, "args": args},
                         timeout=timeout + 10)

    def quit(self) -> None:
        if self.session is not None:
            try:
                self.call("DELETE", self.s(""), timeout=10)
            except (OSError, RuntimeError):
                pass
            self.session = None


def _kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stops chromedriver (by its PID), then whatever is left of the process
    group it leads (the Chromium it started): only processes this test started."""
    pgid = proc.pid
    _stop(proc, grace)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def spki_hash(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)), as --ignore-certificate-errors-spki-list takes it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Browsers:
    """Starts headless Chromiums (each under a chromedriver of its own, in
    the calling thread's network namespace) and stops them all at close()."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.binary, self.driver = _chromium()
        self.started: list[tuple[WebDriver, subprocess.Popen]] = []

    def start(self, extra_args: list[str]) -> WebDriver:
        port = free_port(span=1, hosts=["127.0.0.1"])
        log = self.tmp_path / "chromedriver.log"
        out = open(log, "wb")
        proc = subprocess.Popen([self.driver, f"--port={port}", "--allowed-ips=127.0.0.1",
                                 f"--log-path={log}"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        out.close()
        wd = WebDriver(port)
        self.started.append((wd, proc))
        deadline = time.monotonic() + 15
        while True:
            try:
                if wd.call("GET", "/status", timeout=2).get("ready"):
                    break
            except (OSError, RuntimeError, ValueError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chromedriver did not start:\n{log.read_text(errors='replace')[-3000:]}",
                            pytrace=False)
            time.sleep(0.1)
        profile = self.tmp_path / "profile"
        args = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                f"--user-data-dir={profile}",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--autoplay-policy=no-user-gesture-required"] + extra_args
        wd.new_session(self.binary, args)
        return wd

    def close(self) -> None:
        for wd, proc in self.started:
            wd.quit()
            _kill_group(proc)
        self.started.clear()


@pytest.fixture
def browser(tmp_path):
    """A fresh headless Chromium per test: yields start(extra_args) -> WebDriver."""
    browsers = Browsers(tmp_path)
    yield browsers.start
    browsers.close()


@contextlib.contextmanager
def serving_page():
    """The test page on 127.0.0.1 (of the calling thread's network namespace)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# --------------------------------------------------------------------------
# servers

@pytest.fixture(scope="module")
def browser_server(server_factory):
    """TCP on the listening port, TLS on its own port; metrics where uturnd."""
    if server_kind() != "uturnd":
        return server_factory("turn-browser", tls=True)
    return start_metrics_server(server_factory, "turn-browser", tls=True)


@pytest.fixture(scope="module")
def browser_offload_server(server_factory):
    if server_kind() != "uturnd":
        pytest.skip("--offload is uturnd's")
    if os.geteuid() != 0:
        pytest.skip("the fast path needs root (CAP_BPF and CAP_NET_ADMIN)")
    try:
        srv = start_metrics_server(server_factory, "turn-browser-offload",
                                   "--offload tc --offload-interface lo", tls=True)
    except pytest.fail.Exception as e:
        pytest.skip(f"uturnd --offload tc did not start (attaching failed?): {e}")
    # As root the program must attach (test_offload.py checks the same):
    # a failure here is a failure, not a skip.
    assert "offload: kernel fast path on lo (tc" in srv.output(), srv.output_tail()
    return srv


def offloaded(samples: dict[str, float]) -> dict[str, float]:
    return {d: samples.get(f'uturn_offload_packets_total{{direction="{d}"}}', 0.0)
            for d in ("client_to_peer", "peer_to_client")}


def ice_server(srv, transport: str) -> dict:
    if transport == "udp":
        url = f"turn:127.0.0.1:{srv.port}?transport=udp"
    elif transport == "tcp":
        url = f"turn:127.0.0.1:{srv.port}?transport=tcp"
    else:
        url = f"turns:127.0.0.1:{srv.extra['tls_port']}?transport=tcp"
    return {"urls": [url], "username": srv.user, "credential": srv.password}


# --------------------------------------------------------------------------
# the test

@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
# The offload variants run once: media and data go through the kernel fast
# path there, and the user-space side (ICE, allocation, TCP/TLS) is the same
# code the userspace variants run on both backends.
@pytest.mark.parametrize("fast_path", [False, pytest.param(True, marks=pytest.mark.backend_independent)],
                         ids=["userspace", "offload"])
def test_browser_media_and_data_through_relay(request, browser, page_url, transport, fast_path):
    srv = request.getfixturevalue("browser_offload_server" if fast_path else "browser_server")
    extra = []
    if transport == "tls":
        extra.append(f"--ignore-certificate-errors-spki-list={spki_hash(srv.extra['cert'])}")
    started = time.monotonic()
    wd = browser(extra)
    wd.get(page_url)
    # Counters are published once a second: wait one publication, so that
    # the previous test's last packets are not counted as this one's.
    before = scrape_until(srv.extra["metrics_port"], lambda s: True, timeout=0) \
        if "metrics_port" in srv.extra else None
    remaining = DEADLINE - (time.monotonic() - started)
    try:
        r = wd.execute_async(SESSION_JS, [[ice_server(srv, transport)], MESSAGES, MIN_AUDIO_PACKETS,
                                          MIN_VIDEO_PACKETS, int(max(remaining - 5, 5) * 1000)],
                             timeout=max(remaining, 10))
    except (OSError, RuntimeError) as e:
        pytest.fail(f"browser session failed: {e}\nserver output:\n{srv.output_tail()}", pytrace=False)
    context = f"{json.dumps(r, indent=1)}\nserver output:\n{srv.output_tail(30)}"
    assert r.get("ok"), context

    # Relay policy: every candidate either side offered is a relayed one.
    for side in ("a", "b"):
        cands = r["candidates"][side]
        assert cands and all(" typ relay" in c for c in cands), context

    # The data channel: every message echoed back intact, in order.
    assert r["echoed"] == MESSAGES and r["intact"] == MESSAGES, context

    # Media: both sides received RTP audio and video through the relay.
    assert r["enough"], context
    for side in ("a", "b"):
        assert r["received"][side]["audio"] >= MIN_AUDIO_PACKETS, context
        assert r["received"][side]["video"] >= MIN_VIDEO_PACKETS, context

    # The selected pair is relay to relay, over the transport under test,
    # between relayed addresses of this server.
    lo, hi = srv.relay_range
    for side in ("a", "b"):
        pair = r["pairs"][side]
        assert pair, context
        assert pair["local"]["type"] == "relay" and pair["remote"]["type"] == "relay", context
        assert pair["local"]["relayProtocol"] == transport, context
        for cand in (pair["local"], pair["remote"]):
            assert cand["address"] == "127.0.0.1" and lo <= cand["port"] <= hi, context

    if before is None:
        return
    rtp = sum(r["received"][s][k] for s in ("a", "b") for k in ("audio", "video"))

    def delta(samples):
        now, then = offloaded(samples), offloaded(before)
        return {d: now[d] - then[d] for d in now}

    if fast_path and transport == "udp":
        # Each RTP packet received crossed the relay twice: A's ChannelData to
        # the server becomes a datagram from A's relayed address to B's
        # (client_to_peer), which arrives at B's relayed address and goes to
        # B as ChannelData (peer_to_client). The program relays both hops in
        # one pass (the first ends on this host, at another allocation's
        # relayed address). So the kernel must have carried most packets
        # both ways (the first few may go as Send indications before the
        # channel is bound).
        after = scrape_until(srv.extra["metrics_port"],
                             lambda s: min(delta(s).values()) >= rtp / 2)
    else:
        after = scrape_until(srv.extra["metrics_port"], lambda s: True, timeout=0)
    counts = delta(after)
    relayed = {d: after.get(f'uturn_relayed_packets_total{{direction="{d}"}}', 0.0) -
               before.get(f'uturn_relayed_packets_total{{direction="{d}"}}', 0.0)
               for d in ("client_to_peer", "peer_to_client")}
    print(f"\n{transport} fast_path={fast_path}: RTP packets received {rtp}, "
          f"relayed {relayed}, offloaded {counts}")
    if fast_path and transport == "udp":
        assert counts["client_to_peer"] >= rtp / 2, (counts, rtp, context)
        assert counts["peer_to_client"] >= rtp / 2, (counts, rtp, context)
    else:
        # No fast path, or TCP/TLS clients (whose channels get no kernel
        # entries): user space relayed everything.
        assert counts == {"client_to_peer": 0, "peer_to_client": 0}, (counts, context)
        assert relayed["client_to_peer"] >= rtp / 2, (relayed, rtp, context)


# --------------------------------------------------------------------------
# ALTERNATE-SERVER, followed by the browser's own TURN client

CLONE_NEWNET = 0x40000000
ALT_FIRST, ALT_SECOND = "10.204.7.2", "10.204.7.3"


@contextlib.contextmanager
def in_network_namespace(name: str):
    """Moves the calling thread (and so the sockets it opens and the
    processes it starts) into the named network namespace, and back."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        try:
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
    finally:
        os.close(own)
        os.close(target)


@pytest.fixture
def alternate_namespace():
    """A network namespace of this test's own with ALT_FIRST and ALT_SECOND
    on an interface (Chromium refuses redirects to loopback addresses,
    so the fleet cannot live on 127.0.0.0/8). Deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip(8) for a network namespace")
    name = f"uta-{secrets.token_hex(3)}"
    run = lambda *a: subprocess.run(["ip", "-n", name, *a], check=True, capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        run("link", "set", "lo", "up")
        # A veth pair with both ends in the namespace (no dummy module needed).
        run("link", "add", "alt0", "type", "veth", "peer", "name", "alt1")
        for addr in (ALT_FIRST, ALT_SECOND):
            run("addr", "add", f"{addr}/24", "dev", "alt0")
        run("link", "set", "alt0", "up")
        run("link", "set", "alt1", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.mark.backend_independent
def test_browser_follows_alternate_server(tmp_path, alternate_namespace):
    """Two uturnd: the first redirects every Allocate with 300 to the second
    (--alternate-server-policy always). Chromium is given only the first;
    both its peer connections must end up with relayed candidates of the
    second and talk through them (data channel and media), and the first
    must make no allocation. All of it inside a namespace of the test's own."""
    if server_kind() != "uturnd":
        pytest.skip("uturnd's --alternate-server")
    from test_alternate_server import Node
    browsers = Browsers(tmp_path)
    nodes = []
    with in_network_namespace(alternate_namespace):
        try:
            # The fleet shares its nonces: Chromium sends the alternate the
            # nonce it got from the first server (a 438 there ends its try).
            secret = tmp_path / "fleet.secret"
            secret.write_text(os.urandom(32).hex())
            fleet = f"nonce-secret-file={secret}\n"
            b = Node(tmp_path, ALT_SECOND, fleet + f"allowed-peer-ip={ALT_SECOND}\n")
            nodes.append(b)
            a = Node(tmp_path, ALT_FIRST, fleet + f"alternate-server={b.host}:{b.port}\nalternate-server-policy=always\n")
            nodes.append(a)
            with serving_page() as url:
                wd = browsers.start([])
                wd.get(url)
                ice = {"urls": [f"turn:{a.host}:{a.port}?transport=udp"], "username": USER, "credential": PASSWORD}
                try:
                    r = wd.execute_async(SESSION_JS, [[ice], MESSAGES, MIN_AUDIO_PACKETS, MIN_VIDEO_PACKETS,
                                                      int((DEADLINE - 10) * 1000)], timeout=DEADLINE)
                except (OSError, RuntimeError) as e:
                    pytest.fail(f"browser session failed: {e}\n{a.output()[-2000:]}\n{b.output()[-2000:]}",
                                pytrace=False)
        finally:
            browsers.close()
            for n in nodes:
                _stop(n.proc)
    context = f"{json.dumps(r, indent=1)}\nfirst:\n{a.output()[-1500:]}\nalternate:\n{b.output()[-1500:]}"
    assert r.get("ok"), context
    assert r["echoed"] == MESSAGES and r["intact"] == MESSAGES, context
    assert r["enough"], context
    lo, hi = b.relay_range
    for side in ("a", "b"):
        pair = r["pairs"][side]
        assert pair and pair["local"]["type"] == "relay" and pair["remote"]["type"] == "relay", context
        for cand in (pair["local"], pair["remote"]):
            assert cand["address"] == b.host and lo <= cand["port"] <= hi, context
    assert "300 Try Alternate" in a.output(), context
    assert "allocation created" not in a.output(), context
    assert b.output().count("allocation created") >= 2, context
