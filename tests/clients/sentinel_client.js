// Drives an unmodified sentinel-aware Node client (ioredis or iovalkey) whose only sentinel is the
// coordinator, and prints one JSON object per line of what happened, for a scenario test to read.
//
// Usage: node sentinel_client.js <ioredis|iovalkey> <HOST:PORT> <master-name> [seconds]
//          [--tls-ca FILE [--tls-cert FILE --tls-key FILE]] [--read-back]
//
// Writes through the discovered master in a loop; prints `ready` after the first write, `write`
// whenever a write succeeds on a master other than the last one, and `error` whenever the kind of
// failure changes. The test kills the master with kill -9 and waits for a `write` on the new one.
// Library defaults everywhere (protocol included): the point is the client as shipped.
//
// TLS (`--tls-ca`, with `--tls-cert`/`--tls-key` for the client certificate): the same `ca`,
// `cert` and `key` (file contents) go to the sentinel links (`sentinelTLS`) and to the data
// node (`tls`, which sentinel mode uses only with `enableTLSForSentinelMode`); Node checks the
// peer's name against the IP dialled. `--read-back` reads each write that opens a master back
// and prints the value as `read`. Without these flags the driver behaves exactly as before.
"use strict";

const fs = require("fs");

const positional = [];
const flags = {};
for (let args = process.argv.slice(2); args.length > 0; ) {
  const arg = args.shift();
  if (arg === "--read-back") {
    flags.readBack = true;
  } else if (["--tls-ca", "--tls-cert", "--tls-key"].includes(arg)) {
    flags[arg] = args.shift();
  } else {
    positional.push(arg);
  }
}
const [lib, sentinel, name, seconds = "60"] = positional;
const Redis = require(lib);
const [host, port] = [sentinel.slice(0, sentinel.lastIndexOf(":")), Number(sentinel.slice(sentinel.lastIndexOf(":") + 1))];

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

const options = {
  sentinels: [{ host, port }],
  name,
  connectTimeout: 500,
  commandTimeout: 500,
  maxRetriesPerRequest: 1,
  sentinelRetryStrategy: () => 100,
  retryStrategy: () => 100,
};
if (flags["--tls-ca"] !== undefined) {
  const read = (flag) => (flags[flag] === undefined ? undefined : fs.readFileSync(flags[flag]));
  const tls = { ca: read("--tls-ca"), cert: read("--tls-cert"), key: read("--tls-key") };
  Object.assign(options, { sentinelTLS: tls, tls, enableTLSForSentinelMode: true });
}
const client = new Redis(options);
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
      const key = `coordinator-e2e:${lib}:${i}`;
      await client.set(key, String(i));
      const stream = client.stream;
      const where = `${stream.remoteAddress}:${stream.remotePort}`;
      lastError = null;
      if (where !== lastMaster) {
        const fields = { event: lastMaster === null ? "ready" : "write", master: where, seq: i };
        if (flags.readBack) {
          fields.read = await client.get(key);
        }
        emit(fields);
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
