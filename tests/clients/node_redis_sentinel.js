// Drives node-redis 5's sentinel client (`createSentinel`) whose only sentinel is the coordinator,
// and prints one JSON object per line of what happened (the protocol of sentinel_client.js), for a
// scenario test to read.
//
// Usage: node node_redis_sentinel.js <HOST:PORT> <master-name> <seconds> <2|3>
//
// Writes through the master in a loop, reading each key back; prints `ready` after the first write, `write` whenever a
// write lands on a master other than the last one (asked with `CONFIG GET replica-announce-ip
// port` through the same client), and `error` whenever the kind of failure changes. Library
// defaults everywhere but the protocol and timeouts short enough to see a failover.
"use strict";

const [sentinel, name, seconds = "60", resp = "2"] = process.argv.slice(2);
const { createSentinel } = require("redis");
const colon = sentinel.lastIndexOf(":");
const [host, port] = [sentinel.slice(0, colon), Number(sentinel.slice(colon + 1))];

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + "\n");
}

const socket = { connectTimeout: 500 };
const client = createSentinel({
  name,
  sentinelRootNodes: [{ host, port }],
  RESP: Number(resp),
  nodeClientOptions: { socket },
  sentinelClientOptions: { socket },
});
// Connection errors are reported through the writes below; without a listener Node would print
// every reconnect attempt.
client.on("error", () => {});
// NODE_REDIS_TRACE=1 prints the sentinel client's own trace (its topology decisions) to stderr.
if (process.env.NODE_REDIS_TRACE) {
  client.setTracer({ push: (message) => process.stderr.write(`node-redis trace ${Date.now()}: ${message}\n`) });
}

const version = require("redis/package.json").version;
emit({ event: "started", lib: "node-redis", version, protocol: `resp${resp}` });

const deadline = Date.now() + Number(seconds) * 1000;

// A command that fails or hangs past this counts as an error (node-redis has no per-command
// timeout of its own on the sentinel client).
function bounded(promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error("no reply within 1 s"), { name: "Timeout" })), 1000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function field(config, key) {
  return config instanceof Map ? config.get(key) : config[key];
}

async function loop() {
  let lastMaster = null;
  let lastError = null;
  // connect() itself may wait for a master; count that wait as an error the test can see.
  await bounded(client.connect()).catch((error) => {
    emit({ event: "error", error: error.name || String(error), detail: String(error.message).slice(0, 200) });
  });
  for (let i = 1; Date.now() < deadline; i++) {
    try {
      const key = `coordinator-e2e:node-redis:${i}`;
      await bounded(client.set(key, String(i)));
      const read = await bounded(client.get(key));
      if (read !== String(i)) {
        throw Object.assign(new Error(`${key} read back ${read}, wrote ${i}`), { name: "ReadBack" });
      }
      const config = await bounded(client.configGet(["replica-announce-ip", "port"]));
      const where = `${field(config, "replica-announce-ip")}:${field(config, "port")}`;
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
}

loop().then(
  () => process.exit(0),
  (error) => {
    emit({ event: "fatal", detail: String(error) });
    process.exit(1);
  },
);
