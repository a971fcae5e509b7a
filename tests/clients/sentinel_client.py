"""Drives an unmodified sentinel-aware Python client (redis-py or valkey-py) whose only sentinel is
the coordinator, and prints one JSON object per line of what happened, for a scenario test to read.

Modes:
  writer   write through the discovered master forever; print `ready` after the first write,
           `write` whenever a write succeeds on a master other than the last one, and `error`
           whenever the kind of failure changes. The test kills the master and waits for a `write`
           on the new one.
  discover ask the sentinel for the master every 100 ms; print `master` or `no-master` (with the
           exception class) whenever the outcome changes.

TLS (`--tls-ca`, with `--tls-cert` and `--tls-key` for the client certificate) goes to both the
sentinel links (`sentinel_kwargs`, which the library does not fill from the data-node kwargs) and
the data-node connections (`ssl=True` and the `ssl_*` kwargs, which `master_for` inherits from the
`Sentinel`); host names are checked (the library default), so every certificate must carry the IP
dialled. `--read-back` reads each write that opens a master back and prints the value as `read`.
Without these flags the driver behaves exactly as before.

The client library is used exactly as an application would; nothing is patched.
"""

import argparse
import importlib
import json
import sys
import time


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", choices=["redis", "valkey"], required=True)
    parser.add_argument("--sentinel", required=True, help="HOST:PORT of the coordinator")
    parser.add_argument("--name", required=True)
    parser.add_argument("--mode", choices=["writer", "discover"], required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tls-ca", help="CA bundle: speak TLS to the sentinel and the data nodes")
    parser.add_argument("--tls-cert", help="client certificate presented to both")
    parser.add_argument("--tls-key", help="its private key")
    parser.add_argument("--read-back", action="store_true")
    args = parser.parse_args()

    lib = importlib.import_module(args.lib)
    sentinel_mod = importlib.import_module(args.lib + ".sentinel")
    host, port = args.sentinel.rsplit(":", 1)
    # Library defaults everywhere (protocol included): the point is the client as shipped.
    timeouts = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    if args.tls_ca is None:
        sentinel = sentinel_mod.Sentinel([(host, int(port))], **timeouts)
    else:
        tls = {
            "ssl": True,
            "ssl_ca_certs": args.tls_ca,
            "ssl_certfile": args.tls_cert,
            "ssl_keyfile": args.tls_key,
        }
        sentinel = sentinel_mod.Sentinel(
            [(host, int(port))],
            sentinel_kwargs={**timeouts, **tls},
            **timeouts,
            **tls,
        )
    deadline = time.monotonic() + args.seconds
    emit(event="started", lib=args.lib, version=lib.__version__)

    if args.mode == "discover":
        last = None
        while time.monotonic() < deadline:
            try:
                ip, p = sentinel.discover_master(args.name)
                outcome = {"event": "master", "addr": f"{ip}:{p}"}
            except Exception as error:  # the test asserts on the class name
                outcome = {"event": "no-master", "error": type(error).__name__}
            if outcome != last:
                emit(**outcome)
                last = outcome
            time.sleep(0.1)
        return

    master = sentinel.master_for(args.name, socket_timeout=0.5, socket_connect_timeout=0.5)
    last_master = None
    last_error = None
    i = 0
    while time.monotonic() < deadline:
        i += 1
        key = f"coordinator-e2e:{args.lib}:{i}"
        try:
            master.set(key, i)
            conn = master.connection_pool.get_connection("SET")
            try:
                where = f"{conn.host}:{conn.port}"
                protocol = getattr(conn, "protocol", None)
            finally:
                master.connection_pool.release(conn)
            last_error = None
            if where != last_master:
                fields = {
                    "event": "ready" if last_master is None else "write",
                    "master": where,
                    "seq": i,
                    "protocol": protocol,
                }
                if args.read_back:
                    value = master.get(key)
                    fields["read"] = None if value is None else value.decode()
                emit(**fields)
                last_master = where
        except Exception as error:
            kind = type(error).__name__
            if kind != last_error:
                emit(event="error", error=kind, detail=str(error)[:200])
                last_error = kind
            time.sleep(0.05)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
