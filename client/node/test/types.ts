// Type-checked by `tsc -p test/tsconfig.json` (node_client_test): the
// declarations in index.d.ts describe what a TypeScript caller writes.
import { EgressClient, EgressDispatcher, EgressError, Response, Timing, egressFetch, grpc } from '..';

async function example(): Promise<void> {
  const client = new EgressClient('127.0.0.1:50051', { token: 't', deadlineMs: 5000 });
  const r: Response = await client.get('https://api.example.com/', {
    headers: [['Accept', 'application/json']],
    timeoutMs: 2000,
    retryAttempts: 3,
    retryMaxWaitMs: 1000,
  });
  const status: number = r.status;
  const type: string | undefined = r.header('content-type');
  const t: Timing = r.timing;
  const firstByteMs = t.first_byte ? t.first_byte.seconds * 1000 + t.first_byte.nanos / 1e6 : 0;
  const body: Buffer = r.body;
  await client.post('https://api.example.com/', Buffer.from('x'));
  for await (const piece of client.stream('GET', 'https://api.example.com/events', {
    onHead: (s: number, headers: Array<[string, string]>, timing: Timing) => undefined,
  })) {
    const bytes: Buffer = piece;
  }
  try {
    await client.do('GET', 'http://10.0.0.1/');
  } catch (err) {
    if (err instanceof EgressError) {
      const reason: string = err.reason;
      const code: grpc.status = err.code;
      const origin: string | undefined = err.info['origin'];
      const wait: number | undefined = err.retryDelayMs;
      const fields: Array<[string, string]> = err.fieldViolations;
      if (code === grpc.status.UNAVAILABLE && reason === 'CONNECT_REFUSED') {
        console.log(origin, wait, fields, status, type, firstByteMs, body);
      }
    }
  }
  // The adapters: a fetch for SDKs, and a dispatcher for the global fetch.
  const answer: globalThis.Response = await client.fetch('https://api.example.com/', {
    signal: AbortSignal.timeout(5000),
  });
  const text: string = await answer.text();
  egressFetch.client = client;
  const viaDefault: globalThis.Response = await egressFetch('https://api.example.com/');
  const dispatcher = new EgressDispatcher(client, { maxRequestBytes: 1 << 20 });
  await dispatcher.close();
  console.log(text, viaDefault.status);
  client.close();
}

void example;
