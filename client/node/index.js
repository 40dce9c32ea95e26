'use strict';
// A small Node client for the egress service, on @grpc/grpc-js. The proto is
// loaded at run time from this package's proto/ (nothing generated); types
// are in index.d.ts.
//
//   const { EgressClient } = require('./client/node');
//   const client = new EgressClient('127.0.0.1:50051');
//   const r = await client.get('https://api.example.com/items');
//   console.log(r.status, r.header('content-type'), r.body.length);
//   for await (const piece of client.stream('GET', 'https://api.example.com/events')) { ... }
//
// Errors reject with an EgressError: err.code is a grpc.status value (e.g.
// grpc.status.PERMISSION_DENIED), err.details the service's message, and
// err.reason the stable reason egressd sends ('DESTINATION_DENIED',
// 'CONNECT_REFUSED', ...: docs/errors.md), with err.info (origin, address,
// limit, ...), err.retryDelayMs where waiting helps and err.fieldViolations.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// Copies of proto/egress/v1/egress.proto and third_party/googleapis/google/rpc
// kept in this package (test/fresh.test.js checks they match).
const PROTO = path.join(__dirname, 'proto', 'egress', 'v1', 'egress.proto');
const definition = protoLoader.loadSync(PROTO, {
  keepCase: true,
  longs: Number,
  defaults: true,
  oneofs: true,
});
const { egress } = grpc.loadPackageDefinition(definition);

// A header's value as a string. Bytes that are not UTF-8 arrive in raw_value
// and are decoded as latin1, as Node's http module does, so that every byte
// survives: Buffer.from(value, 'latin1') gives them back.
function headerValue(h) {
  return h.raw_value && h.raw_value.length > 0 ? Buffer.from(h.raw_value).toString('latin1') : h.value;
}

// A request header: a string value as it is; a Buffer as a string when it is
// UTF-8, else in raw_value, unchanged.
function headerField(name, value) {
  if (!Buffer.isBuffer(value)) return { name, value };
  const text = value.toString('utf8');
  return Buffer.from(text, 'utf8').equals(value) ? { name, value: text } : { name, raw_value: value };
}

// A header's bytes as a latin1 string (what fetch's Headers and Node's http
// module hold: one character per byte).
function headerLatin1(h) {
  return h.raw_value && h.raw_value.length > 0
    ? Buffer.from(h.raw_value).toString('latin1')
    : Buffer.from(h.value, 'utf8').toString('latin1');
}

// google.rpc.Status and its details, decoded from the grpc-status-details-bin
// trailer. (google/protobuf/*.proto come with protobufjs.)
let rpcRoot;
function rpcType(name) {
  if (!rpcRoot) {
    const dir = path.join(__dirname, 'proto', 'google', 'rpc');
    rpcRoot = new protobuf.Root().loadSync(
      [path.join(dir, 'status.proto'), path.join(dir, 'error_details.proto')], { keepCase: true });
  }
  return rpcRoot.lookupType(name);
}

class EgressError extends Error {
  constructor(grpcError) {
    super(grpcError.message);
    this.name = 'EgressError';
    this.code = grpcError.code;
    this.details = grpcError.details;
    this.metadata = grpcError.metadata; // the call's trailing grpc.Metadata
    this.reason = ''; // 'CONNECT_REFUSED', ...; '' when none came
    this.domain = '';
    this.info = {}; // the ErrorInfo's metadata: origin, address, limit, ...
    this.retryDelayMs = undefined; // RetryInfo, where waiting helps
    this.fieldViolations = []; // [[field, description], ...]
    const raw = grpcError.metadata && grpcError.metadata.get('grpc-status-details-bin')[0];
    if (raw) {
      try {
        this._decode(Buffer.from(raw));
      } catch (e) {
        this.decodeError = e; // the code and message still stand
      }
    }
  }

  _decode(bytes) {
    const status = rpcType('google.rpc.Status').decode(bytes);
    for (const any of status.details) {
      const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
      if (name === 'google.rpc.ErrorInfo') {
        const info = rpcType(name).decode(any.value);
        this.reason = info.reason;
        this.domain = info.domain;
        this.info = { ...info.metadata };
      } else if (name === 'google.rpc.RetryInfo') {
        const delay = rpcType(name).decode(any.value).retry_delay || {};
        this.retryDelayMs = Number(delay.seconds || 0) * 1000 + (delay.nanos || 0) / 1e6;
      } else if (name === 'google.rpc.BadRequest') {
        const bad = rpcType(name).decode(any.value);
        this.fieldViolations = bad.field_violations.map((v) => [v.field, v.description]);
      }
    }
  }
}

function egressError(err) {
  return err && err.code !== undefined && err.metadata ? new EgressError(err) : err;
}

class Response {
  constructor(status, headers, body, timing) {
    this.status = status;
    this.headers = headers; // [[name, value], ...]; names may repeat
    this.body = body; // Buffer
    this.timing = timing;
  }

  // The first value of header `name` (case-insensitive), or undefined.
  header(name) {
    const lower = name.toLowerCase();
    const found = this.headers.find(([n]) => n.toLowerCase() === lower);
    return found && found[1];
  }
}

class EgressClient {
  // target: 'dns:///egress:50051' (round_robin over its addresses) or 'host:port'.
  constructor(target, { token, credentials, deadlineMs = 30000 } = {}) {
    const options = { 'grpc.max_receive_message_length': -1 };
    if (target.startsWith('dns:')) {
      options['grpc.service_config'] = JSON.stringify({
        loadBalancingConfig: [{ round_robin: {} }],
      });
    }
    this._client = new egress.v1.EgressService(
      target, credentials || grpc.credentials.createInsecure(), options);
    this._token = token;
    this._deadlineMs = deadlineMs;
  }

  close() {
    this._client.close();
  }

  _metadata() {
    const metadata = new grpc.Metadata();
    if (this._token) metadata.set('authorization', `Bearer ${this._token}`);
    return metadata;
  }

  static _request(method, url, { headers = [], body = Buffer.alloc(0), timeoutMs,
    retryAttempts, retryMaxWaitMs } = {}) {
    const duration = (ms) => ({ seconds: Math.floor(ms / 1000), nanos: Math.round((ms % 1000) * 1e6) });
    const request = {
      method,
      url,
      headers: headers.map(([name, value]) => headerField(name, value)),
      body: Buffer.from(body),
    };
    if (timeoutMs) request.timeout = duration(timeoutMs);
    if (retryAttempts > 1) {
      request.retry = { max_attempts: retryAttempts };
      if (retryMaxWaitMs !== undefined) request.retry.max_wait = duration(retryMaxWaitMs);
    }
    return request;
  }

  // One request. timeoutMs bounds the upstream, deadlineMs the call;
  // retryAttempts > 1 retries answers that ask for it (429/503 with
  // Retry-After) up to that many attempts in all.
  do(method, url, options = {}) {
    const { deadlineMs } = options;
    const request = EgressClient._request(method, url, options);
    const deadline = Date.now() + (deadlineMs || this._deadlineMs);
    return new Promise((resolve, reject) => {
      this._client.Do(request, this._metadata(), { deadline }, (err, reply) => {
        if (err) return reject(egressError(err));
        resolve(new Response(reply.status, reply.headers.map((h) => [h.name, headerValue(h)]),
          reply.body, reply.timing));
      });
    });
  }

  get(url, options = {}) {
    return this.do('GET', url, options);
  }

  post(url, body, options = {}) {
    return this.do('POST', url, { ...options, body });
  }

  // Yields body Buffers as they arrive; options.onHead(status, headers, timing) gets the
  // head. A failure mid-body throws: a stream that ends without one is complete.
  // A stream has no deadline unless deadlineMs gives one: event streams last
  // minutes, and the service ends a silent one (--stream_idle_timeout).
  async* stream(method, url, options = {}) {
    const { deadlineMs, onHead } = options;
    const request = EgressClient._request(method, url, options);
    const callOptions = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
    const call = this._client.DoStream(request, this._metadata(), callOptions);
    try {
      for await (const chunk of call) {
        if (chunk.part === 'head') {
          if (onHead) {
            onHead(chunk.head.status, chunk.head.headers.map((h) => [h.name, headerValue(h)]),
              chunk.head.timing);
          }
        } else {
          yield chunk.body;
        }
      }
    } catch (err) {
      throw egressError(err);
    }
  }
}

// Starts a DoStream call and returns at once: { call, head }, where head is
// a promise of { status, headers, byteHeaders, timing } (it rejects with an
// EgressError) and call the grpc-js stream, paused after the head, whose
// later messages carry body bytes; call.cancel() cancels it. The adapters
// (fetch.js) are built on it.
EgressClient.prototype.openStream = function openStream(method, url, options = {}) {
  const request = EgressClient._request(method, url, options);
  const callOptions = options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {};
  const call = this._client.DoStream(request, this._metadata(), callOptions);
  const head = new Promise((resolve, reject) => {
    const done = () => {
      call.removeListener('data', onData);
      call.removeListener('error', onError);
      call.removeListener('end', onEnd);
    };
    const onData = (message) => {
      done();
      call.pause();
      const h = message.head || { status: 0, headers: [] };
      resolve({
        status: h.status,
        headers: h.headers.map((x) => [x.name, headerValue(x)]),
        byteHeaders: h.headers.map((x) => [x.name, headerLatin1(x)]),
        timing: h.timing,
      });
    };
    const onError = (err) => {
      done();
      reject(egressError(err));
    };
    const onEnd = () => {
      done();
      reject(new EgressError({ code: grpc.status.INTERNAL, message: 'the stream ended before its head',
        details: 'the stream ended before its head', metadata: null }));
    };
    call.on('data', onData);
    call.on('error', onError);
    call.on('end', onEnd);
  });
  // A later error is the body's reader's to see; never an unhandled one.
  call.on('error', () => {});
  return { call, head };
};

// client.fetch(input, init): WHATWG fetch through this client (fetch.js).
Object.defineProperty(EgressClient.prototype, 'fetch', {
  get() {
    if (!this._fetch) {
      const { fetchWith } = require('./fetch.js');
      this._fetch = (input, init) => fetchWith(this, input, init);
    }
    return this._fetch;
  },
});

const { egressFetch, EgressDispatcher } = require('./fetch.js');

module.exports = {
  EgressClient, EgressError, Response, grpc, egressError, egressFetch, EgressDispatcher,
};
