'use strict';
// Example: node client/node/example.js 127.0.0.1:50051 http://127.0.0.1:8000/
const { EgressClient, grpc } = require('./index.js');

async function main() {
  const [server, url] = process.argv.slice(2);
  const client = new EgressClient(server);
  try {
    const r = await client.get(url, { timeoutMs: 5000 });
    console.log(r.status, r.header('content-type'), r.body.length, 'bytes');
    for await (const piece of client.stream('GET', url)) process.stdout.write(piece);
  } catch (err) {
    console.error(`${grpc.status[err.code]}: ${err.details}`);
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

main();
