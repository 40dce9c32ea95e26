// Types of the egress Node client (index.js).
import * as grpc from '@grpc/grpc-js';
import { EventEmitter } from 'node:events';

export { grpc };

/** A google.protobuf.Duration as the client returns it. */
export interface Duration {
  seconds: number;
  nanos: number;
}

/** Where a call's time went (egress.v1.Timing; field names as in the proto). */
export interface Timing {
  connection_reused: boolean;
  /** Upstream attempts, stale-connection and Retry-After retries included. */
  attempts: number;
  queued: Duration | null;
  upstream: Duration | null;
  total: Duration | null;
  dns: Duration | null;
  /** Unset (null) on a reused connection. */
  connect: Duration | null;
  /** Unset (null) on a reused connection and for http://. */
  tls: Duration | null;
  /** From the start of the exchange (DNS included) to the response head. */
  first_byte: Duration | null;
  remote_address: string;
  remote_port: number;
  /** Time waited as answers' Retry-After asked. */
  retry_wait: Duration | null;
}

/** [name, value] pairs; names may repeat and keep their order. */
export type Headers = Array<[string, string]>;

export interface ClientOptions {
  /** Sent as "authorization: Bearer <token>" with every call. */
  token?: string;
  /** TLS to egressd; insecure when absent. */
  credentials?: grpc.ChannelCredentials;
  /** The deadline of a call that gives none (default 30000). */
  deadlineMs?: number;
}

export interface CallOptions {
  headers?: Headers;
  body?: Buffer | Uint8Array | string;
  /** Bounds the upstream exchange. */
  timeoutMs?: number;
  /** Bounds the call (Do: default ClientOptions.deadlineMs; streams: none). */
  deadlineMs?: number;
  /** > 1: retry answers that ask for it (429/503 with Retry-After), up to this many attempts in all. */
  retryAttempts?: number;
  /** The longest Retry-After waited for. */
  retryMaxWaitMs?: number;
}

export interface StreamOptions extends CallOptions {
  /** Gets the head when it arrives. */
  onHead?: (status: number, headers: Headers, timing: Timing) => void;
}

/** The upstream's answer: any HTTP status, 404 and 503 included. */
export class Response {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Buffer;
  readonly timing: Timing;
  /** The first value of header `name` (case-insensitive). */
  header(name: string): string | undefined;
}

/** A failed call, with the details egressd sends (docs/errors.md). */
export class EgressError extends Error {
  /** A grpc.status value. */
  readonly code: grpc.status;
  /** The service's message. */
  readonly details: string;
  /** The call's trailing metadata. */
  readonly metadata: grpc.Metadata;
  /** 'DESTINATION_DENIED', 'CONNECT_REFUSED', ...; '' when none came. */
  readonly reason: string;
  /** 'egress.local'. */
  readonly domain: string;
  /** What the error concerns: origin, address, limit, ... */
  readonly info: Record<string, string>;
  /** Wait this long before retrying, where waiting helps. */
  readonly retryDelayMs: number | undefined;
  /** [field, description] of each invalid field. */
  readonly fieldViolations: Array<[string, string]>;
}

export class EgressClient {
  /** target: 'dns:///egress:50051' (round_robin over its addresses) or 'host:port'. */
  constructor(target: string, options?: ClientOptions);
  close(): void;
  do(method: string, url: string, options?: CallOptions): Promise<Response>;
  get(url: string, options?: CallOptions): Promise<Response>;
  post(url: string, body: Buffer | Uint8Array | string, options?: CallOptions): Promise<Response>;
  /** Body pieces as they arrive; throws EgressError if the stream fails. */
  stream(method: string, url: string, options?: StreamOptions): AsyncGenerator<Buffer, void, undefined>;
  /**
   * Starts a DoStream call: `head` resolves when the head arrives (rejects
   * with an EgressError); `call`, paused after the head, then gives messages
   * carrying `body` bytes; call.cancel() cancels. The adapters are built on it.
   */
  openStream(method: string, url: string, options?: CallOptions): {
    call: grpc.ClientReadableStream<{ body?: Buffer }>;
    head: Promise<StreamHead>;
  };
  /** WHATWG fetch through this client, bound: `new OpenAI({ fetch: client.fetch })`. */
  readonly fetch: typeof globalThis.fetch;
}

export interface StreamHead {
  status: number;
  headers: Headers;
  /** The values as latin1 strings, one character per byte (as fetch's Headers). */
  byteHeaders: Headers;
  timing: Timing;
}

/**
 * fetch through `egressFetch.client`, or through a client made on first use
 * from $EGRESS_TARGET (default 127.0.0.1:50051) and $EGRESS_TOKEN.
 */
export declare const egressFetch: typeof globalThis.fetch & { client: EgressClient | undefined };

/**
 * An undici Dispatcher: `setGlobalDispatcher(new EgressDispatcher(client))`
 * sends Node's global fetch through egress.
 */
export class EgressDispatcher extends EventEmitter {
  constructor(client: EgressClient, options?: { maxRequestBytes?: number });
  dispatch(options: object, handler: object): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}
