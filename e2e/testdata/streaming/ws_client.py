"""An independent WebSocket peer of berthd's streaming server: PyPI's
websocket-client (module `websocket`), in the venv scripts/install-deps
makes. e2e/tests/streaming_peers.rs runs it; it prints one JSON object.

Usage:
  ws_client.py exec URL PROTOCOL [--stdin]
      remote command over PROTOCOL (v5.channel.k8s.io, v4.channel.k8s.io,
      v4.base64.channel.k8s.io, channel.k8s.io): with --stdin, sends this
      process's stdin on channel 0, then, with v5, the close message [255, 0];
      reads until the server closes. Prints {"protocol", "stdout",
      "stderr" (each {len, sha256, b64 (< 64 KiB)}), "status" (the error
      channel, JSON parsed when it is), "close_code", "close_reason",
      "reset" (the server reset the connection), "unknown_channels"}.
  ws_client.py portforward URL PROTOCOL PORTS PATH [WAIT_CLOSE]
      port-forward to the comma-separated PORTS (as the URL was issued
      for); reads the first message of each of the 2*len(PORTS) channels
      (the port, 2 bytes little-endian), then sends `GET PATH HTTP/1.0`
      on every data channel and reads until the server closes, or until
      every port has its whole response (Content-Length) or an error and
      WAIT_CLOSE seconds (at least 0.2) passed without the server closing
      ("closed_by_server" says which). Prints
      {"protocol", "first": [[channel, port]...], "channels": {channel:
      {len, sha256, b64, text}}, "http": {data channel: {head, body} or
      null}, "close_code", "close_reason"}.
  ws_client.py send-channel URL PROTOCOL CHANNEL
      sends one message on CHANNEL and reads until the server closes
      (the close code and reason printed).
  ws_client.py upgrade URL PROTOCOL
      only the handshake: prints {"status": HTTP status}.
"""

import base64
import hashlib
import json
import struct
import sys

import websocket

TIMEOUT = 120


def ws_url(url):
    return "ws://" + url.split("://", 1)[1]


def http(b):
    """An HTTP response: its head as text, its body as output()."""
    head, sep, body = b.partition(b"\r\n\r\n")
    if not sep:
        return None
    return {"head": head.decode("latin-1"), "body": output(body)}


def output(b):
    return {
        "len": len(b),
        "sha256": hashlib.sha256(b).hexdigest(),
        "b64": base64.b64encode(b).decode() if len(b) < 64 * 1024 else None,
        "text": b.decode("utf-8", "replace") if len(b) < 64 * 1024 else None,
    }


class Session:
    def __init__(self, url, protocol):
        self.ws = websocket.create_connection(
            ws_url(url), subprotocols=[protocol], timeout=TIMEOUT
        )
        self.protocol = self.ws.getsubprotocol()
        if self.protocol != protocol:
            raise SystemExit(f"negotiated {self.protocol!r}, asked for {protocol!r}")
        self.base64 = "base64" in protocol
        self.close_code = None
        self.close_reason = None
        self.reset = False

    def send(self, channel, data):
        if self.base64:
            self.ws.send(str(channel) + base64.b64encode(data).decode())
        else:
            self.ws.send_binary(bytes([channel]) + data)

    def recv(self):
        """(channel, data), or None once the server closed (its close
        frame's code and reason kept) or reset the connection."""
        ws = self.ws
        while True:
            try:
                frame = ws.recv_frame()
            except websocket.WebSocketConnectionClosedException:
                return None
            except ConnectionResetError:
                self.reset = True
                return None
            op = frame.opcode
            if op in (
                websocket.ABNF.OPCODE_TEXT,
                websocket.ABNF.OPCODE_BINARY,
                websocket.ABNF.OPCODE_CONT,
            ):
                ws.cont_frame.validate(frame)
                ws.cont_frame.add(frame)
                if not ws.cont_frame.is_fire(frame):
                    continue
                op, frame = ws.cont_frame.extract(frame)
            elif op == websocket.ABNF.OPCODE_CLOSE:
                if len(frame.data) >= 2:
                    self.close_code = struct.unpack("!H", frame.data[:2])[0]
                    self.close_reason = frame.data[2:].decode("utf-8", "replace")
                else:
                    self.close_code = 1005
                    self.close_reason = ""
                try:
                    ws.send_close()
                except OSError:
                    # The server closed its socket at once (a reset).
                    self.reset = True
                return None
            elif op == websocket.ABNF.OPCODE_PING:
                ws.pong(frame.data)
                continue
            else:
                continue
            if op == websocket.ABNF.OPCODE_BINARY:
                if self.base64:
                    raise SystemExit("binary message on a base64 protocol")
                if not frame.data:
                    continue
                return frame.data[0], frame.data[1:]
            if not self.base64:
                raise SystemExit("text message on a binary protocol")
            if not frame.data:
                continue
            return frame.data[0] - ord("0"), base64.b64decode(frame.data[1:])

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass


def exec_(url, protocol, stdin=None):
    s = Session(url, protocol)
    if stdin == "--stdin":
        data = sys.stdin.buffer.read()
        for i in range(0, len(data), 16 * 1024):
            s.send(0, data[i : i + 16 * 1024])
        if protocol.startswith("v5."):
            s.ws.send_binary(bytes([255, 0]))
    chans = {1: bytearray(), 2: bytearray(), 3: bytearray()}
    unknown = []
    while True:
        m = s.recv()
        if m is None:
            break
        c, d = m
        if c in chans:
            chans[c] += d
        else:
            unknown.append(c)
    s.close()
    err = bytes(chans[3])
    try:
        status = json.loads(err) if err else None
    except ValueError:
        status = err.decode("utf-8", "replace")
    return {
        "protocol": s.protocol,
        "stdout": output(bytes(chans[1])),
        "stderr": output(bytes(chans[2])),
        "status": status,
        "close_code": s.close_code,
        "close_reason": s.close_reason,
        "reset": s.reset,
        "unknown_channels": unknown,
    }


def complete(chans, nports):
    """Whether every port has its whole HTTP response (Content-Length
    met) on its data channel, or an error on its error channel."""
    for i in range(nports):
        if chans.get(2 * i + 1):
            continue
        r = http(bytes(chans.get(2 * i, b"")))
        if r is None:
            return False
        length = [
            line.split(":", 1)[1].strip()
            for line in r["head"].split("\r\n")
            if line.lower().startswith("content-length:")
        ]
        if not length or r["body"]["len"] < int(length[0]):
            return False
    return True


def portforward(url, protocol, ports, path, wait_close="0"):
    ports = [int(p) for p in ports.split(",")]
    s = Session(url, protocol)
    first = []
    seen = set()
    chans = {}
    while len(seen) < 2 * len(ports):
        m = s.recv()
        if m is None:
            raise SystemExit(f"closed before the port messages: {first}")
        c, d = m
        if c in seen:
            # Data before the port message of another channel: kept.
            chans.setdefault(c, bytearray()).extend(d)
            continue
        seen.add(c)
        first.append([c, struct.unpack("<H", d)[0] if len(d) == 2 else d.hex()])
    for i in range(len(ports)):
        s.send(2 * i, f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
    # Until every response is whole (then, as an HTTP client would, the
    # connection is closed after waiting WAIT_CLOSE seconds for the
    # server to close it), or until the server closes.
    closed_by_server = False
    while True:
        if complete(chans, len(ports)):
            s.ws.settimeout(max(float(wait_close), 0.2))
        try:
            m = s.recv()
        except websocket.WebSocketTimeoutException:
            break
        if m is None:
            closed_by_server = True
            break
        c, d = m
        chans.setdefault(c, bytearray()).extend(d)
    s.close()
    return {
        "protocol": s.protocol,
        "first": first,
        "channels": {str(c): output(bytes(d)) for c, d in sorted(chans.items())},
        "http": {str(2 * i): http(bytes(chans.get(2 * i, b""))) for i in range(len(ports))},
        "close_code": s.close_code,
        "close_reason": s.close_reason,
        "reset": s.reset,
        "closed_by_server": closed_by_server,
    }


def send_channel(url, protocol, channel):
    s = Session(url, protocol)
    s.send(int(channel), b"hello\n")
    got = []
    while True:
        m = s.recv()
        if m is None:
            break
        got.append([m[0], base64.b64encode(m[1]).decode()])
    s.close()
    return {
        "close_code": s.close_code,
        "close_reason": s.close_reason,
        "reset": s.reset,
        "got": got,
    }


def upgrade(url, protocol):
    try:
        ws = websocket.create_connection(
            ws_url(url), subprotocols=[protocol], timeout=TIMEOUT
        )
    except websocket.WebSocketBadStatusException as e:
        body = e.resp_body.decode("utf-8", "replace") if e.resp_body else ""
        return {"status": e.status_code, "body": body}
    ws.close()
    return {"status": 101, "body": ""}


def main():
    mode, url, protocol, *rest = sys.argv[1:]
    if mode == "exec":
        r = exec_(url, protocol, *rest)
    elif mode == "portforward":
        r = portforward(url, protocol, *rest)
    elif mode == "send-channel":
        r = send_channel(url, protocol, *rest)
    elif mode == "upgrade":
        r = upgrade(url, protocol)
    else:
        raise SystemExit(f"unknown mode {mode}")
    json.dump(r, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
