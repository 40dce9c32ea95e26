'use strict';
// Existing HTTP code through egress with one line:
//
//   const { EgressClient, egressFetch, EgressDispatcher } = require('egress-client');
//   const client = new EgressClient('127.0.0.1:50051');
//   new OpenAI({ fetch: client.fetch });            // or { fetch: egressFetch }
//   undici.setGlobalDispatcher(new EgressDispatcher(client)); // the global fetch
//
// Both perform each request with one DoStream call: the head returns as soon
// as egressd has it and the body streams as it arrives; aborting (AbortSignal,
// or cancelling the body) cancels the call and egressd aborts the upstream
// exchange. egressFetch is the whole of fetch: it follows redirects as
// `redirect` says and decodes Content-Encoding (gzip, deflate, br). Through
// EgressDispatcher, Node's own fetch does those. Errors reject as fetch's do:
// a TypeError('fetch failed') whose cause carries egress's `reason`, `info`
// and `retryDelayMs`; the cause is an EgressError for a policy refusal or a
// limit, else an Error with the code Node's fetch would give (ECONNREFUSED,
// ENOTFOUND, UND_ERR_CONNECT_TIMEOUT, UND_ERR_HEADERS_TIMEOUT,
// UND_ERR_BODY_TIMEOUT, UND_ERR_SOCKET). docs/api.md has the whole mapping.

const { EventEmitter } = require('node:events');
const { STATUS_CODES } = require('node:http');
const { Readable } = require('node:stream');
const zlib = require('node:zlib');

// egressd's default --max_request_bytes: a bigger body fails before any call.
const DEFAULT_MAX_REQUEST_BYTES = 16 << 20;

// Headers egress owns: hop-by-hop ones, Host (the URL names the origin) and
// the body's framing.
const OWNED = new Set(['connection', 'keep-alive', 'te', 'trailer', 'upgrade',
  'transfer-encoding', 'host', 'content-length']);
const owned = (name) => OWNED.has(name.toLowerCase()) || /^proxy-/i.test(name);

// What Node's fetch calls the failure, by egress's reason.
const NODE_CODES = {
  CONNECT_REFUSED: 'ECONNREFUSED',
  DNS_FAILED: 'ENOTFOUND',
  CONNECT_TIMEOUT: 'UND_ERR_CONNECT_TIMEOUT',
  TLS_VERIFY_FAILED: 'UND_ERR_SOCKET',
  TLS_HANDSHAKE_FAILED: 'UND_ERR_SOCKET',
  UPSTREAM_RESET: 'UND_ERR_SOCKET',
  BODY_INCOMPLETE: 'UND_ERR_SOCKET',
  BAD_RESPONSE: 'UND_ERR_SOCKET',
  HEAD_TOO_LARGE: 'UND_ERR_HEADERS_OVERFLOW',
  UPSTREAM_FAILED: 'UND_ERR_SOCKET',
  UPSTREAM_TIMEOUT: 'UND_ERR_HEADERS_TIMEOUT',
  DEADLINE_EXCEEDED: 'UND_ERR_HEADERS_TIMEOUT',
  STREAM_IDLE: 'UND_ERR_BODY_TIMEOUT',
};

// The cause a fetch failure carries: Node's kind of error where Node's fetch
// has one, the EgressError itself for egress's own refusals and limits.
function causeOf(egressError, inBody) {
  let code = NODE_CODES[egressError.reason];
  if (!code && !egressError.reason && egressError.code === 4 /* DEADLINE_EXCEEDED */) {
    code = 'UND_ERR_HEADERS_TIMEOUT';
  }
  if (!code) return egressError;
  if (inBody && code === 'UND_ERR_HEADERS_TIMEOUT') code = 'UND_ERR_BODY_TIMEOUT';
  const cause = new Error(`egress: ${egressError.details} (${egressError.reason || 'timeout'})`);
  cause.code = code;
  cause.reason = egressError.reason;
  cause.info = egressError.info;
  cause.retryDelayMs = egressError.retryDelayMs;
  cause.egress = egressError;
  return cause;
}

function fetchFailed(egressError) {
  return new TypeError('fetch failed', { cause: causeOf(egressError, false) });
}

function tooLarge(limit) {
  return new RangeError(`the request body is over ${limit} bytes, egress's request ` +
    'limit (maxRequestBytes)');
}

// The whole request body from whatever the library gave: a string, bytes, an
// (async) iterable of them, a Node stream or a WHATWG ReadableStream.
async function collectBody(body, limit) {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === 'string') body = Buffer.from(body);
  if (body instanceof ArrayBuffer) body = Buffer.from(body);
  if (ArrayBuffer.isView(body)) {
    if (body.byteLength > limit) throw tooLarge(limit);
    return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }
  const parts = [];
  let size = 0;
  const source = typeof body.getReader === 'function' ? Readable.fromWeb(body) : body;
  for await (const piece of source) {
    const bytes = typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece);
    size += bytes.length;
    if (size > limit) throw tooLarge(limit);
    parts.push(bytes);
  }
  return Buffer.concat(parts);
}

// The body of an open stream as a WHATWG ReadableStream, read as the caller
// reads (backpressure reaches egressd); cancelling it cancels the call at
// once, even while a read waits for the upstream.
function bodyStream(opened, mapError) {
  const pieces = opened.call[Symbol.asyncIterator]();
  let ended = false;
  const end = () => {
    ended = true;
    opened.detach();
  };
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        let step;
        try {
          step = await pieces.next();
        } catch (err) {
          if (!ended) {
            end();
            controller.error(mapError(require('./index.js').egressError(err)));
          }
          return;
        }
        if (ended) return;
        if (step.done) {
          end();
          controller.close();
          return;
        }
        const piece = step.value.body;
        if (piece && piece.length) {
          controller.enqueue(new Uint8Array(piece.buffer, piece.byteOffset, piece.length));
          return;
        }
      }
    },
    cancel() {
      if (!ended) {
        end();
        opened.call.cancel();
      }
    },
  });
}

// A zlib decoder as a TransformStream.
function zlibStream(decoder) {
  let failed = null;
  return new TransformStream({
    start(controller) {
      decoder.on('data', (d) => controller.enqueue(new Uint8Array(d)));
      decoder.on('error', (err) => {
        failed = err;
        controller.error(new TypeError('terminated', { cause: err }));
      });
    },
    transform(chunk) {
      return new Promise((resolve, reject) => {
        decoder.write(chunk, () => (failed ? reject(failed) : resolve()));
      });
    },
    flush() {
      return new Promise((resolve, reject) => {
        decoder.once('end', resolve);
        decoder.once('error', reject);
        decoder.end();
      });
    },
  });
}

const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// The decoder fetch applies for a Content-Encoding, or null.
function decoderFor(encoding) {
  const flush = { flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  switch ((encoding || '').trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip(flush);
    case 'deflate':
      return zlib.createInflate(flush);
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

// fetch(input, init) through `client`.
async function fetchWith(client, input, init, options = {}) {
  const limit = options.maxRequestBytes || DEFAULT_MAX_REQUEST_BYTES;
  const request = new Request(input, init);
  const signal = request.signal;
  if (signal.aborted) throw signal.reason;
  let body = request.body ? await collectBody(request.body, limit) : null;
  let method = request.method;
  let url = request.url;
  // Header values as bytes (Headers holds one latin1 character per byte).
  const headers = [...request.headers].filter(([name]) => !owned(name))
    .map(([name, value]) => [name, Buffer.from(value, 'latin1')]);
  for (let hops = 0; ; hops++) {
    const opened = await openWithSignal(client, method, url, headers, body, signal);
    const { status } = opened.head;
    const location = opened.head.headers.find(([n]) => n.toLowerCase() === 'location');
    if (REDIRECTS.has(status) && location && request.redirect !== 'manual') {
      opened.call.cancel();
      opened.detach();
      if (request.redirect === 'error') {
        throw new TypeError('fetch failed', { cause: new Error('unexpected redirect') });
      }
      if (hops >= 20) {
        throw new TypeError('fetch failed', { cause: new Error('redirect count exceeded') });
      }
      const next = new URL(location[1], url);
      if (status === 303 || ((status === 301 || status === 302) && method === 'POST')) {
        if (method !== 'HEAD') method = 'GET';
        body = null;
        for (let i = headers.length - 1; i >= 0; i--) {
          if (/^content-/i.test(headers[i][0])) headers.splice(i, 1);
        }
      }
      if (next.origin !== new URL(url).origin) {
        for (let i = headers.length - 1; i >= 0; i--) {
          if (/^(authorization|cookie|proxy-authorization)$/i.test(headers[i][0])) {
            headers.splice(i, 1);
          }
        }
      }
      url = next.href;
      continue;
    }
    return toResponse(opened, method, url, hops > 0, signal);
  }
}

function openWithSignal(client, method, url, headers, body, signal) {
  return new Promise((resolve, reject) => {
    const opened = client.openStream(method, url, { headers, body: body || Buffer.alloc(0) });
    const onAbort = () => opened.call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    const detach = () => signal.removeEventListener('abort', onAbort);
    opened.head.then((head) => {
      // After the head, an abort cancels the call and errors the body.
      resolve({ ...opened, head, detach });
    }, (err) => {
      signal.removeEventListener('abort', onAbort);
      reject(signal.aborted ? signal.reason : fetchFailed(err));
    });
  });
}

function toResponse(opened, method, url, redirected, signal) {
  const { head } = opened;
  const headers = new Headers();
  for (const [name, latin1] of head.byteHeaders) headers.append(name, latin1);
  let body = null;
  if (method === 'HEAD' || NULL_BODY.has(head.status)) {
    opened.call.cancel();
    opened.detach();
  } else {
    body = bodyStream(opened, (err) => (signal.aborted
      ? signal.reason : new TypeError('terminated', { cause: causeOf(err, true) })));
    const decoder = decoderFor(headers.get('content-encoding'));
    if (decoder) body = body.pipeThrough(zlibStream(decoder));
  }
  const statusText = STATUS_CODES[head.status] || '';
  const response = new Response(body, { status: head.status, statusText, headers });
  Object.defineProperty(response, 'url', { value: url });
  Object.defineProperty(response, 'redirected', { value: redirected });
  return response;
}

// egressFetch(input, init): fetch through the client of egressFetch.client,
// or one made on first use from $EGRESS_TARGET (default 127.0.0.1:50051) and
// $EGRESS_TOKEN.
function egressFetch(input, init) {
  if (!egressFetch.client) {
    const { EgressClient } = require('./index.js');
    egressFetch.client = new EgressClient(process.env.EGRESS_TARGET || '127.0.0.1:50051',
      { token: process.env.EGRESS_TOKEN });
  }
  return fetchWith(egressFetch.client, input, init);
}
egressFetch.client = undefined;

// Header pairs from an undici dispatch: an object, a flat array, or pairs.
function dispatchHeaders(h) {
  const out = [];
  if (!h) return out;
  if (Array.isArray(h)) {
    if (h.length && Array.isArray(h[0])) {
      for (const [n, v] of h) out.push([String(n), String(v)]);
    } else {
      for (let i = 0; i + 1 < h.length; i += 2) out.push([String(h[i]), String(h[i + 1])]);
    }
  } else if (typeof h[Symbol.iterator] === 'function') {
    for (const [n, v] of h) out.push([String(n), String(v)]);
  } else {
    for (const [n, v] of Object.entries(h)) {
      for (const one of Array.isArray(v) ? v : [v]) out.push([n, String(one)]);
    }
  }
  return out.filter(([name]) => !owned(name))
    .map(([name, value]) => [name, Buffer.from(value, 'latin1')]);
}

// An undici Dispatcher: setGlobalDispatcher(new EgressDispatcher(client))
// sends Node's global fetch (and undici's request/fetch) through egress. It
// implements dispatch() with undici's handler callbacks (onConnect,
// onHeaders, onData, onComplete, onError), as Node 18-22's fetch calls them.
class EgressDispatcher extends EventEmitter {
  constructor(client, { maxRequestBytes = DEFAULT_MAX_REQUEST_BYTES } = {}) {
    super();
    this._client = client;
    this._limit = maxRequestBytes;
    this._calls = new Set();
    this._closed = false;
  }

  dispatch(opts, handler) {
    if (this._closed) {
      queueMicrotask(() => handler.onError(new Error('EgressDispatcher is closed')));
      return false;
    }
    this._run(opts, handler).catch((err) => handler.onError(err));
    return true;
  }

  async _run(opts, handler) {
    let call = null;
    let aborted = null;
    handler.onConnect((reason) => {
      aborted = reason || new Error('aborted');
      if (call) call.cancel();
    });
    const body = await collectBody(opts.body, this._limit);
    if (aborted) throw aborted;
    const url = new URL(opts.path, opts.origin).href;
    const opened = this._client.openStream(opts.method, url,
      { headers: dispatchHeaders(opts.headers), body });
    call = opened.call;
    if (aborted) call.cancel();
    this._calls.add(call);
    const forget = () => this._calls.delete(call);
    let head;
    try {
      head = await opened.head;
    } catch (err) {
      forget();
      throw aborted || causeOf(err, false);
    }
    const raw = [];
    for (const [name, latin1] of head.byteHeaders) {
      raw.push(Buffer.from(name, 'latin1'), Buffer.from(latin1, 'latin1'));
    }
    const statusText = STATUS_CODES[head.status] || '';
    const resume = () => call.resume();
    if (handler.onHeaders(head.status, raw, resume, statusText) === false) call.pause();
    await new Promise((resolve) => {
      call.on('data', (message) => {
        if (message.body && message.body.length &&
            handler.onData(Buffer.from(message.body)) === false) {
          call.pause();
        }
      });
      call.on('end', () => {
        forget();
        handler.onComplete([]);
        resolve();
      });
      call.on('error', (err) => {
        forget();
        // The handler aborted after the head (fetch does when it follows a
        // redirect or its body is cancelled): it has what it needs, and an
        // onError now would fail the fetch that goes on. (undici's own
        // client has often delivered a small body whole by then.)
        if (!aborted) handler.onError(causeOf(require('./index.js').egressError(err), true));
        resolve();
      });
      call.resume();
    });
  }

  close(callback) {
    this._closed = true;
    const done = Promise.resolve();
    if (callback) done.then(() => callback(null, null));
    return done;
  }

  destroy(err, callback) {
    if (typeof err === 'function') [callback, err] = [err, null];
    this._closed = true;
    for (const call of this._calls) call.cancel();
    this._calls.clear();
    const done = Promise.resolve();
    if (callback) done.then(() => callback(null, null));
    return done;
  }
}

module.exports = { egressFetch, fetchWith, EgressDispatcher, DEFAULT_MAX_REQUEST_BYTES };
