'use strict';
// A small Node client for the egress service, on @grpc/grpc-js. The proto is
// loaded at run time from proto/egress/v1/egress.proto (nothing generated).
//
//   const { EgressClient } = require('./client/node');
//   const client = new EgressClient('127.0.0.1:50051');
//   const r = await client.get('https://api.example.com/items');
//   console.log(r.status, r.header('content-type'), r.body.length);
//   for await (const piece of client.stream('GET', 'https://api.example.com/events')) { ... }
//
// Errors reject with the gRPC error (err.code is a grpc.status value, e.g.
// grpc.status.PERMISSION_DENIED; err.details the service's message).

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO = path.join(__dirname, '..', '..', 'proto', 'egress', 'v1', 'egress.proto');
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

  static _request(method, url, headers = [], body = Buffer.alloc(0), timeoutMs) {
    const request = {
      method,
      url,
      headers: headers.map(([name, value]) => ({ name, value })),
      body: Buffer.from(body),
    };
    if (timeoutMs) {
      request.timeout = {
        seconds: Math.floor(timeoutMs / 1000),
        nanos: (timeoutMs % 1000) * 1e6,
      };
    }
    return request;
  }

  // One request. timeoutMs bounds the upstream, deadlineMs the call.
  do(method, url, { headers, body, timeoutMs, deadlineMs } = {}) {
    const request = EgressClient._request(method, url, headers, body, timeoutMs);
    const deadline = Date.now() + (deadlineMs || this._deadlineMs);
    return new Promise((resolve, reject) => {
      this._client.Do(request, this._metadata(), { deadline }, (err, reply) => {
        if (err) return reject(err);
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

  // Yields body Buffers as they arrive; options.onHead(status, headers) gets the
  // head. A failure mid-body throws: a stream that ends without one is complete.
  // A stream has no deadline unless deadlineMs gives one: event streams last
  // minutes, and the service ends a silent one (--stream_idle_timeout).
  async* stream(method, url, { headers, body, timeoutMs, deadlineMs, onHead } = {}) {
    const request = EgressClient._request(method, url, headers, body, timeoutMs);
    const callOptions = deadlineMs ? { deadline: Date.now() + deadlineMs } : {};
    const call = this._client.DoStream(request, this._metadata(), callOptions);
    for await (const chunk of call) {
      if (chunk.part === 'head') {
        if (onHead) {
          onHead(chunk.head.status, chunk.head.headers.map((h) => [h.name, headerValue(h)]));
        }
      } else {
        yield chunk.body;
      }
    }
  }
}

module.exports = { EgressClient, Response, grpc };
