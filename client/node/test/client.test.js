'use strict';
// The Node client against a real egressd ($EGRESSD, started here on 127.0.0.1
// with an ephemeral port) and a loopback upstream. Run: node --test test/
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const net = require('node:net');
const { spawn } = require('node:child_process');
const { EgressClient, EgressError, grpc } = require('../index.js');

let upstream;
const busySeen = new Set();
let rawUpstream;
let base;
let egressd;
let client;
let target;

function startEgressd() {
  return new Promise((resolve, reject) => {
    const binary = process.env.EGRESSD;
    if (!binary) return reject(new Error('set EGRESSD to the egressd binary'));
    egressd = spawn(binary, ['--listen=127.0.0.1:0', '--metrics_listen=',
      '--allow_cidrs=127.0.0.0/8,::1/128', '--allow_ports=*'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`egressd did not start: ${log}`)), 30000);
    egressd.stderr.on('data', (data) => {
      log += data;
      const match = /serving gRPC on port (\d+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(`127.0.0.1:${match[1]}`);
      }
    });
    egressd.on('exit', () => reject(new Error(`egressd exited: ${log}`)));
  });
}

test.before(async () => {
  upstream = http.createServer((req, res) => {
    if (req.url === '/repeat') {
      res.setHeader('Set-Cookie', ['a=1', 'b=2']);
      res.end('ok');
    } else if (req.url.startsWith('/busy-once/')) {
      // The first request for each path: 429 with Retry-After: 0.
      const first = !busySeen.has(req.url);
      busySeen.add(req.url);
      res.statusCode = first ? 429 : 200;
      if (first) res.setHeader('Retry-After', '0');
      res.end(first ? 'busy' : 'ok');
    } else if (req.url === '/slow') {
      setTimeout(() => res.end('late'), 2000);
    } else if (req.url === '/sse' || req.url === '/sse-long') {
      const [events, gap] = req.url === '/sse' ? [3, 50] : [5, 200];
      res.writeHead(200, { 'Content-Type': 'text/event-stream' });
      let i = 0;
      const timer = setInterval(() => {
        res.write(`data: ${i}\n\n`);
        if (++i === events) {
          clearInterval(timer);
          res.end();
        }
      }, gap);
    } else if (req.method === 'POST') {
      const parts = [];
      req.on('data', (d) => parts.push(d));
      req.on('end', () => {
        res.setHeader('X-Method', 'POST');
        res.end(Buffer.concat(parts));
      });
    } else {
      res.statusCode = 404;
      res.end('not found');
    }
  });
  await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${upstream.address().port}`;
  // Node's http module will not put the byte 0xE9 alone in a header, so this
  // upstream writes its answer by hand: a Latin-1 filename, as servers in the
  // wild send it.
  rawUpstream = net.createServer((socket) => {
    socket.once('data', () => socket.end(Buffer.from(
      'HTTP/1.1 200 OK\r\nContent-Disposition: attachment; filename="caf\xe9.txt"\r\n' +
      'Content-Length: 2\r\nConnection: close\r\n\r\nok', 'latin1')));
  });
  await new Promise((resolve) => rawUpstream.listen(0, '127.0.0.1', resolve));
  target = await startEgressd();
  client = new EgressClient(target);
});

test.after(() => {
  client.close();
  egressd.kill('SIGTERM');
  upstream.close();
  upstream.closeAllConnections();
  rawUpstream.close();
});

test('GET returns the upstream status', async () => {
  const r = await client.get(`${base}/missing`);
  assert.strictEqual(r.status, 404);
  assert.strictEqual(r.body.toString(), 'not found');
});

test('POST carries a binary body', async () => {
  const body = Buffer.from([...Array(256).keys()]);
  const r = await client.post(`${base}/echo`, body);
  assert.strictEqual(r.status, 200);
  assert.deepStrictEqual(r.body, body);
  assert.strictEqual(r.header('x-method'), 'POST');
});

test('repeated response headers keep their order', async () => {
  const r = await client.get(`${base}/repeat`);
  assert.deepStrictEqual(
    r.headers.filter(([n]) => n.toLowerCase() === 'set-cookie').map(([, v]) => v),
    ['a=1', 'b=2']);
});

test('header bytes that are not UTF-8 survive as latin1', async () => {
  const r = await client.get(`http://127.0.0.1:${rawUpstream.address().port}/`);
  const value = r.header('content-disposition');
  assert.strictEqual(value, 'attachment; filename="caf\u00e9.txt"');
  assert.deepStrictEqual(Buffer.from(value, 'latin1'),
    Buffer.from('attachment; filename="caf\xe9.txt"', 'latin1'));
});

test('a streamed response arrives head first, then the body', async () => {
  let status;
  const pieces = [];
  for await (const piece of client.stream('GET', `${base}/sse`, {
    onHead: (s) => { status = s; },
  })) pieces.push(piece);
  assert.strictEqual(status, 200);
  assert.strictEqual(Buffer.concat(pieces).toString(), 'data: 0\n\ndata: 1\n\ndata: 2\n\n');
});

test('streams have no default deadline', async () => {
  // The client's deadline (300 ms) is for calls; the stream takes about 1 s.
  const short = new EgressClient(target, { deadlineMs: 300 });
  try {
    const pieces = [];
    for await (const piece of short.stream('GET', `${base}/sse-long`)) pieces.push(piece);
    assert.ok(Buffer.concat(pieces).toString().endsWith('data: 4\n\n'));
    await assert.rejects(short.get(`${base}/slow`),
      (err) => err.code === grpc.status.DEADLINE_EXCEEDED);
  } finally {
    short.close();
  }
});

test('a deadline ends the call', async () => {
  await assert.rejects(client.get(`${base}/slow`, { deadlineMs: 300 }),
    (err) => err.code === grpc.status.DEADLINE_EXCEEDED);
});

test('refused destinations and bad URLs keep their codes', async () => {
  await assert.rejects(client.get('http://10.0.0.1/'), (err) =>
    err.code === grpc.status.PERMISSION_DENIED && /private address/.test(err.details));
  await assert.rejects(client.get('ftp://example.com/'),
    (err) => err.code === grpc.status.INVALID_ARGUMENT);
});

test('errors carry their reason, and responses their timing phases', async () => {
  await assert.rejects(client.get('http://10.0.0.1/'), (err) => {
    assert.ok(err instanceof EgressError);
    assert.strictEqual(err.reason, 'DESTINATION_DENIED');
    assert.strictEqual(err.domain, 'egress.local');
    assert.ok(err.info.rule);
    return true;
  });
  await assert.rejects(client.get('ftp://example.com/'), (err) => {
    assert.strictEqual(err.reason, 'INVALID_REQUEST');
    assert.strictEqual(err.fieldViolations[0][0], 'url');
    return true;
  });
  // A port nobody listens on: refused.
  const closed = net.createServer();
  await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = closed.address().port;
  await new Promise((resolve) => closed.close(resolve));
  await assert.rejects(client.get(`http://127.0.0.1:${port}/`), (err) => {
    assert.strictEqual(err.code, grpc.status.UNAVAILABLE);
    assert.strictEqual(err.reason, 'CONNECT_REFUSED');
    assert.strictEqual(err.info.address, '127.0.0.1');
    return true;
  });
  const fresh = new EgressClient(target);
  try {
    const r = await fresh.get(`${base}/repeat`);
    assert.strictEqual(r.timing.remote_address, '127.0.0.1');
    assert.ok(Number(r.timing.first_byte.nanos) > 0 || Number(r.timing.first_byte.seconds) > 0);
    assert.ok(r.timing.dns);
  } finally {
    fresh.close();
  }
});

test('answers that ask for a retry are retried when asked', async () => {
  assert.strictEqual((await client.get(`${base}/busy-once/a`)).status, 429);
  const r = await client.get(`${base}/busy-once/b`, { retryAttempts: 2 });
  assert.strictEqual(r.status, 200);
  assert.strictEqual(r.timing.attempts, 2);
  let head;
  const pieces = [];
  for await (const piece of client.stream('GET', `${base}/busy-once/c`, {
    retryAttempts: 2, onHead: (status, headers, timing) => { head = { status, timing }; },
  })) pieces.push(piece);
  assert.strictEqual(head.status, 200);
  assert.strictEqual(head.timing.attempts, 2);
  assert.strictEqual(Buffer.concat(pieces).toString(), 'ok');
});
