'use strict';
// egressFetch and EgressDispatcher: every case of tests/client/conformance.json
// through client.fetch, and through Node's own global fetch with
// setGlobalDispatcher(new EgressDispatcher(...)) (undici, from the lockfile);
// then the openai SDK (npm, pinned in the lockfile) unmodified with
// `fetch: client.fetch` against the extras' OpenAI-compatible server. Run by
// tests/client/node_client_test.sh under conformance_servers.py, whose
// environment names egressd, httpbin and the extras.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const { setGlobalDispatcher, getGlobalDispatcher } = require('undici');
const OpenAI = require('openai');
const { EgressClient, EgressError, EgressDispatcher, egressFetch } = require('../index.js');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`$${name} is not set: run under tests/client/conformance_servers.py`);
  return value;
};
const expand = (text, id) => text.replace('{httpbin}', env('HTTPBIN'))
  .replace('{extras}', env('EXTRAS')).replace('{refused}', env('REFUSED'))
  .replace('{denied}', env('DENIED')).replace('{id}', id);

// A GET that does not go through egress (stats and metrics).
function direct(url) {
  return new Promise((resolve) => {
    http.get(url, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve(data));
    }).on('error', () => resolve(''));
  });
}

async function inFlight() {
  const m = /^egress_requests_in_flight(?:\{[^}]*\})? (\S+)$/m.exec(await direct(env('EGRESS_METRICS')));
  return m ? Number(m[1]) : -1;
}

async function waitCancelled(id) {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const stats = id ? JSON.parse(await direct(`${env('EXTRAS')}/stats?id=${id}`)).state : 'closed';
    if (stats === 'closed' && await inFlight() === 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

const rssMB = () => process.memoryUsage.rss() / 2 ** 20;
const client = new EgressClient(env('EGRESS_TARGET'), { token: env('EGRESS_TOKEN') });
const { cases } = JSON.parse(fs.readFileSync(env('CONFORMANCE'), 'utf8'));
const KNOWN = new Set(['status', 'body', 'body_empty', 'json', 'headers', 'header_bytes', 'body_bytes',
  'rss_growth_mb', 'events', 'spread_ms', 'error', 'reason', 'redirects', 'cancel']);

function classify(err) {
  const cause = err && err.cause;
  if (err && (err.name === 'TimeoutError' || (cause && /TIMEOUT$/.test(cause.code || '')))) return 'timeout';
  if (cause && ['ECONNREFUSED', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT'].includes(cause.code)) return 'connect';
  if (cause instanceof EgressError) return 'egress';
  return `other: ${err}`;
}

async function runCase(fetchFn, c, id) {
  const req = c.request;
  const expect = c.expect;
  const init = { method: req.method || 'GET', headers: [...(req.headers || [])] };
  if (req.body !== undefined) init.body = req.body;
  if (req.body_chunks) {
    const pieces = req.body_chunks.map((p) => Buffer.from(p));
    init.body = new ReadableStream({
      pull(controller) {
        if (pieces.length) controller.enqueue(pieces.shift()); else controller.close();
      },
    });
    init.duplex = 'half';
  }
  if (req.multipart) {
    const form = new FormData();
    form.append(req.multipart.field, new Blob([req.multipart.content]), req.multipart.filename);
    init.body = form;
  }
  if (req.basic_auth) {
    init.headers.push(['Authorization', `Basic ${Buffer.from(req.basic_auth.join(':')).toString('base64')}`]);
  }
  if (req.timeout_s) init.signal = AbortSignal.timeout(req.timeout_s * 1000);
  if (req.follow_redirects === false) init.redirect = 'manual';
  let response;
  try {
    response = await fetchFn(expand(req.url, id), init);
  } catch (err) {
    assert.ok(expect.error, `unexpected ${err} (cause ${err.cause && err.cause.stack})`);
    assert.strictEqual(classify(err), expect.error, `${err} ${err.cause}`);
    if (expect.reason) assert.strictEqual(err.cause.reason, expect.reason);
    return;
  }
  assert.ok(!expect.error, `got ${response.status}, want a ${expect.error} error`);
  assert.strictEqual(response.status, expect.status);
  for (const [name, values] of Object.entries(expect.headers || {})) {
    assert.strictEqual(response.headers.get(name), values.join(', '));
  }
  for (const [name, hex] of Object.entries(expect.header_bytes || {})) {
    assert.strictEqual(Buffer.from(response.headers.get(name), 'latin1').toString('hex'), hex);
  }
  if (expect.redirects !== undefined) assert.strictEqual(response.redirected, expect.redirects > 0);
  if (expect.cancel) {
    const reader = response.body.getReader();
    await reader.read();
    await reader.cancel();
    assert.ok(await waitCancelled(id), 'the upstream exchange outlived the cancelled body');
    return;
  }
  if (expect.events) {
    const times = [];
    const decoder = new TextDecoder();
    let text = '';
    for await (const piece of response.body) {
      text += decoder.decode(piece, { stream: true });
      const lines = text.split('\n');
      text = lines.pop();
      for (const line of lines) if (line.startsWith('data:')) times.push(Date.now());
    }
    assert.strictEqual(times.length, expect.events);
    assert.ok(times[times.length - 1] - times[0] >= expect.spread_ms, `events at ${times}: not streamed`);
    return;
  }
  if (expect.body_bytes) {
    const start = rssMB();
    let peak = 0;
    let count = 0;
    let i = 0;
    for await (const piece of response.body) {
      count += piece.length;
      if (i++ % 32 === 0) peak = Math.max(peak, rssMB() - start);
    }
    assert.strictEqual(count, expect.body_bytes);
    assert.ok(peak < expect.rss_growth_mb, `RSS grew ${peak.toFixed(1)} MiB`);
    return;
  }
  const body = Buffer.from(await response.arrayBuffer());
  if (expect.body_empty) assert.strictEqual(body.length, 0);
  if (expect.body !== undefined) assert.strictEqual(body.toString(), expect.body);
  if (expect.json) {
    const doc = JSON.parse(body.toString());
    for (const [path, want] of Object.entries(expect.json)) {
      const got = path.split('.').reduce((node, part) => node[part], doc);
      assert.deepStrictEqual(got, typeof want === 'string' ? expand(want, id) : want, path);
    }
  }
}

const adapters = {
  'node-fetch': (url, init) => client.fetch(url, init),
  // Node's own fetch, with egress as undici's global dispatcher.
  'node-dispatcher': async (url, init) => {
    const previous = getGlobalDispatcher();
    setGlobalDispatcher(new EgressDispatcher(client));
    try {
      return await fetch(url, init);
    } finally {
      setGlobalDispatcher(previous);
    }
  },
};

for (const [adapter, fetchFn] of Object.entries(adapters)) {
  test.describe(adapter, () => {
    cases.forEach((c, n) => {
      for (const key of Object.keys(c.expect)) {
        if (!KNOWN.has(key)) throw new Error(`conformance.json: ${c.name}: unknown expect key ${key}`);
      }
      const skip = c.skip && c.skip[adapter];
      test.it(c.name, { skip }, () => runCase(fetchFn, c, `${adapter}-${n}`));
    });
  });
}

test.describe('openai SDK through egress', () => {
  const openai = new OpenAI({
    apiKey: 'sk-conformance', baseURL: `${env('EXTRAS')}/v1`, fetch: client.fetch, maxRetries: 0,
  });

  test.it('a chat completion', async () => {
    const answer = await openai.chat.completions.create({
      model: 'local', messages: [{ role: 'user', content: 'hello there' }],
    });
    assert.strictEqual(answer.choices[0].message.content, 'echo: hello there');
    assert.strictEqual(answer.usage.total_tokens, 3);
  });

  test.it('a streamed chat completion arrives chunk by chunk', async () => {
    const stream = await openai.chat.completions.create({
      model: 'local', stream: true, metadata: { gap_ms: '300' },
      messages: [{ role: 'user', content: 'one two three four' }],
    });
    const words = [];
    const sent = [];
    const arrivals = [];
    for await (const chunk of stream) {
      const delta = chunk.choices[0].delta;
      words.push(delta.content);
      arrivals.push(Date.now());
      sent.push(delta.sent_at * 1000);
    }
    assert.deepStrictEqual(words, ['one', 'two', 'three', 'four']);
    // Sent 300 ms apart: the first arrived before the server sent the last
    // (the server's timestamps), and they arrived spread as they were sent.
    const lags = arrivals.map((at, i) => at - sent[i]);
    assert.ok(arrivals[0] < sent[3], `lags ${lags} ms: the chunks came together`);
    assert.ok(arrivals[3] - arrivals[0] >= 600, `arrivals ${arrivals}`);
  });

  test.it('an API error is the SDK\'s own error class', async () => {
    await assert.rejects(openai.chat.completions.create({
      model: 'missing', messages: [{ role: 'user', content: 'x' }],
    }), (err) => err instanceof OpenAI.NotFoundError && err.status === 404 &&
      err.code === 'model_not_found' && err.request_id === 'req_missing');
    const wrongKey = new OpenAI({ apiKey: 'sk-wrong', baseURL: `${env('EXTRAS')}/v1`,
      fetch: egressFetch, maxRetries: 0 });
    egressFetch.client = client;
    await assert.rejects(wrongKey.models.list(), (err) => err instanceof OpenAI.APIError);
    await assert.rejects(wrongKey.chat.completions.create({
      model: 'local', messages: [{ role: 'user', content: 'x' }],
    }), OpenAI.AuthenticationError);
  });

  test.it('an unreachable API is the SDK\'s connection error', async () => {
    const down = new OpenAI({ apiKey: 'sk-conformance', baseURL: `${env('REFUSED')}/v1`,
      fetch: client.fetch, maxRetries: 0 });
    await assert.rejects(down.chat.completions.create({
      model: 'local', messages: [{ role: 'user', content: 'x' }],
    }), (err) => err instanceof OpenAI.APIConnectionError &&
      err.cause && err.cause.cause && err.cause.cause.reason === 'CONNECT_REFUSED');
  });

  test.it('a cancelled stream frees egress\'s call', async () => {
    const words = Array.from({ length: 50 }, (_, i) => `w${i}`).join(' ');
    const stream = await openai.chat.completions.create({
      model: 'local', stream: true, metadata: { gap_ms: '200' },
      messages: [{ role: 'user', content: words }],
    });
    for await (const chunk of stream) {
      assert.strictEqual(chunk.choices[0].delta.content, 'w0');
      break; // the SDK aborts the request
    }
    stream.controller.abort();
    assert.ok(await waitCancelled(null), 'egressd still has the call in flight');
  });
});

test.after(() => client.close());
