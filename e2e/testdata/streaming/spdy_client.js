// An independent SPDY/3.1 peer of berthd's streaming server: the npm
// package spdy-transport as the client, the HTTP/1.1 upgrade done here
// over `net`, the streams opened the way kubectl opens them.
// (e2e/tests/streaming_peers.rs runs it; scripts/install-deps installs
// spdy-transport in /var/cache/berth-node, found through NODE_PATH.)
//
// Usage:
//   node spdy_client.js exec URL [--stdin]
//     remote command (v4.channel.k8s.io): error, [stdin (this process's
//     stdin, sent then half-closed),] stdout, stderr
//     streams; prints {"status": <metav1.Status>, "stdout": {...},
//     "stderr": {...}} where each output is {len, sha256, b64 (< 64 KiB)}
//   node spdy_client.js portforward URL PATH [--hold] GROUP...
//     port-forward (portforward.k8s.io) on one session: each GROUP is
//     PORTxN, N connections to PORT at once, groups one after another;
//     each connection opens its error stream, then its data stream (both
//     with the same requestid), sends `GET PATH HTTP/1.0`, half-closes
//     and reads both streams to their end. Prints [{"port", "requestid",
//     "response": {len, head, body}, "error": "...", "held"}...].
//     With --hold the data stream is half-closed only once the error
//     stream ended (or after 5 s: "held" is then "timeout"), as kubectl
//     does while its local client waits for the end of the response.
//   node spdy_client.js upgrade URL PROTOCOL
//     only the upgrade: prints {"status": <HTTP status>, "body": "..."}.
//
// spdy-transport's quirks, worked around here: it is an HTTP-over-SPDY
// library, so a client stream waits for a SYN_REPLY with `:status` and
// answers one without (which kubelet, like berth, sends: Go's spdystream
// replies with no headers) with RST_STREAM PROTOCOL_ERROR. The streams
// here are told they need no response: the reply then arrives as a
// 'headers' event. Its SYN_STREAMs carry the HTTP pseudo headers
// (:method, :path, :version, :host, :scheme) besides ours, which a
// server must ignore.
'use strict'

const net = require('net')
const crypto = require('crypto')
const transport = require('spdy-transport')

function fail (msg) {
  process.stderr.write(`spdy_client: ${msg}\n`)
  process.exit(2)
}

// Connects, sends the upgrade request, resolves with {status, headers,
// body, socket} once the response head is in; the bytes after it are put
// back into the socket for SPDY.
function upgrade (url, protocol) {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(u.port), u.hostname)
    let buf = Buffer.alloc(0)
    const onData = (chunk) => {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.removeListener('data', onData)
      socket.pause()
      const head = buf.subarray(0, end).toString('latin1').split('\r\n')
      const status = Number(head[0].split(' ')[1])
      const headers = {}
      for (const line of head.slice(1)) {
        const i = line.indexOf(':')
        headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      const rest = buf.subarray(end + 4)
      if (status !== 101) {
        // The error body: read what comes until the server closes or
        // Content-Length is met.
        let body = rest
        const want = Number(headers['content-length'] || -1)
        const done = () => {
          socket.destroy()
          resolve({ status, headers, body: body.toString('utf8') })
        }
        if (want >= 0 && body.length >= want) return done()
        socket.on('data', (c) => {
          body = Buffer.concat([body, c])
          if (want >= 0 && body.length >= want) done()
        })
        socket.on('end', done)
        socket.resume()
        return
      }
      if (rest.length > 0) socket.unshift(rest)
      resolve({ status, headers, socket })
    }
    socket.on('data', onData)
    socket.on('error', reject)
    socket.on('connect', () => {
      socket.write(
        `POST ${u.pathname} HTTP/1.1\r\n` +
        `Host: ${u.host}\r\n` +
        'Content-Length: 0\r\n' +
        'Connection: Upgrade\r\n' +
        'Upgrade: SPDY/3.1\r\n' +
        `X-Stream-Protocol-Version: ${protocol}\r\n` +
        '\r\n')
    })
  })
}

async function session (url, protocol) {
  const up = await upgrade(url, protocol)
  if (up.status !== 101) fail(`upgrade: HTTP ${up.status}: ${up.body}`)
  if (up.headers['x-stream-protocol-version'] !== protocol) {
    fail(`upgrade: negotiated ${up.headers['x-stream-protocol-version']}`)
  }
  const conn = transport.connection.create(up.socket, {
    protocol: 'spdy',
    isServer: false
  })
  conn.start(3.1)
  up.socket.resume()
  // An error after the results are in (the server closing its socket
  // while this side still sends WINDOW_UPDATE or GOAWAY) is only noted.
  conn.lateErrors = []
  conn.done = false
  conn.on('error', (e) => {
    if (!conn.done) fail(`connection: ${e.message}`)
    conn.lateErrors.push(e.message)
  })
  return conn
}

// Opens a stream with `headers` and resolves once the server's SYN_REPLY
// came (as kubectl's CreateStream does).
function openStream (conn, headers) {
  return new Promise((resolve, reject) => {
    const s = conn.request({
      method: 'POST',
      path: '/',
      headers
    }, (err) => { if (err) reject(err) })
    s._spdyState.needResponse = false
    s.once('headers', () => resolve(s))
    s.on('error', reject)
  })
}

// Everything a stream's read side carries, until its end.
function readAll (stream) {
  return new Promise((resolve, reject) => {
    const chunks = []
    stream.on('data', (c) => chunks.push(c))
    stream.on('end', () => resolve(Buffer.concat(chunks)))
    stream.on('error', reject)
  })
}

function output (b) {
  return {
    len: b.length,
    sha256: crypto.createHash('sha256').update(b).digest('hex'),
    b64: b.length < 64 * 1024 ? b.toString('base64') : null
  }
}

// An HTTP response: its head as text, its body as output().
function http (b) {
  const end = b.indexOf('\r\n\r\n')
  if (end < 0) return { len: b.length, head: b.toString('latin1'), body: null }
  return { len: b.length, head: b.subarray(0, end).toString('latin1'), body: output(b.subarray(end + 4)) }
}

async function readStdin () {
  const chunks = []
  for await (const c of process.stdin) chunks.push(c)
  return Buffer.concat(chunks)
}

async function exec (url, withStdin) {
  const input = withStdin ? await readStdin() : null
  const conn = await session(url, 'v4.channel.k8s.io')
  const error = await openStream(conn, { streamtype: 'error' })
  error.end() // the client never writes on it
  const reads = { error: readAll(error) }
  if (input !== null) {
    const stdin = await openStream(conn, { streamtype: 'stdin' })
    stdin.resume()
    stdin.end(input)
  }
  for (const t of ['stdout', 'stderr']) {
    const s = await openStream(conn, { streamtype: t })
    s.end()
    reads[t] = readAll(s)
  }
  const [err, out, errOut] = await Promise.all([reads.error, reads.stdout, reads.stderr])
  conn.done = true
  let status = null
  if (err.length > 0) status = JSON.parse(err.toString('utf8'))
  conn.end()
  return { status, stdout: output(out), stderr: output(errOut), late_errors: conn.lateErrors }
}

async function forwardOne (conn, port, requestid, path, hold) {
  const headers = { streamtype: 'error', port: String(port), requestid: String(requestid) }
  const error = await openStream(conn, headers)
  error.end()
  const errRead = readAll(error)
  const data = await openStream(conn, { ...headers, streamtype: 'data' })
  const dataRead = readAll(data)
  const request = `GET ${path} HTTP/1.0\r\nHost: localhost\r\n\r\n`
  let held = null
  if (hold) {
    data.write(request)
    held = await Promise.race([
      errRead.then(() => 'error stream ended'),
      new Promise((resolve) => setTimeout(() => resolve('timeout'), 5000))
    ])
    data.end()
  } else {
    data.end(request)
  }
  const [e, d] = await Promise.all([errRead, dataRead])
  return { port, requestid, response: http(d), error: e.toString('utf8'), held }
}

async function portforward (url, path, groups) {
  const hold = groups[0] === '--hold'
  if (hold) groups = groups.slice(1)
  const conn = await session(url, 'portforward.k8s.io')
  const results = []
  let requestid = 0
  for (const g of groups) {
    const [port, n] = g.split('x').map(Number)
    const conns = []
    for (let i = 0; i < (n || 1); i++) conns.push(forwardOne(conn, port, requestid++, path, hold))
    results.push(...await Promise.all(conns))
  }
  conn.done = true
  conn.end()
  return results
}

async function main () {
  const [mode, url, ...rest] = process.argv.slice(2)
  if (!url) fail('usage: spdy_client.js exec|portforward|upgrade URL ...')
  const timer = setTimeout(() => fail('timed out after 120 s'), 120000)
  let result
  if (mode === 'exec') {
    result = await exec(url, rest[0] === '--stdin')
  } else if (mode === 'portforward') {
    result = await portforward(url, rest[0], rest.slice(1))
  } else if (mode === 'upgrade') {
    const up = await upgrade(url, rest[0] || 'v4.channel.k8s.io')
    if (up.socket) up.socket.destroy()
    result = { status: up.status, body: up.body || '' }
  } else {
    fail(`unknown mode ${mode}`)
  }
  clearTimeout(timer)
  process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0))
}

main().catch((e) => fail(e.stack || String(e)))
