// Drives an unmodified sentinel-aware Node client (ioredis or iovalkey) whose only sentinel is the
// coordinator, and prints one JSON object per line of what happened, for a scenario test to read.
//
// Usage: node sentinel_client.js <ioredis|iovalkey> <HOST:PORT> <master-name> [seconds]
//
// Writes through the discovered master in a loop; prints `ready` after the first write, `write`
// whenever a write succeeds on a master other than the last one, and `error` whenever the kind of
// failure changes. The test kills the master with kill -9 and waits for a `write` on the new one.
// Library defaults everywhere (protocol included): the point is the client as shipped.
"use strict";

const [lib, sentinel, name, seconds = "60"] = process.argv.slice(2);
const Redis = require(lib);
const [host, port] = [sentinel.slice(0, sentinel.lastIndexOf(":")), Number(sentinel.slice(sentinel.lastIndexOf(":") + 1))];

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

const client = new Redis({
  sentinels: [{ host, port }],
  name,
  connectTimeout: 500,
  commandTimeout: 500,
  maxRetriesPerRequest: 1,
  sentinelRetryStrategy: () => 100,
  retryStrategy: () => 100,
});
// Connection errors are reported through the writes below; without a listener Node would print
// every reconnect attempt.
client.on("error", () => {});

const version = require(`${lib}/package.json`).version;
emit({ event: "started", lib, version });

const deadline = Date.now() + Number(seconds) * 1000;
let lastMaster = null;
let lastError = null;

async function loop() {
  for (let i = 1; Date.now() < deadline; i++) {
    try {
      await client.set(`coordinator-e2e:${lib}:${i}`, String(i));
      const stream = client.stream;
      const where = `${stream.remoteAddress}:${stream.remotePort}`;
      lastError = null;
      if (where !== lastMaster) {
        emit({ event: lastMaster === null ? "ready" : "write", master: where, seq: i });
        lastMaster = where;
      }
    } catch (error) {
      const kind = error && error.name ? error.name : String(error);
      if (kind !== lastError) {
        emit({ event: "error", error: kind, detail: String(error && error.message).slice(0, 200) });
        lastError = kind;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  client.disconnect();
}

loop().then(
  () => process.exit(0),
  (error) => {
    emit({ event: "fatal", detail: String(error) });
    process.exit(1);
  },
);
