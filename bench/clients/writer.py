"""A writer through redis-py's Sentinel support, exactly as an application would use it, that
reports how long each master change kept it from writing.

It writes as fast as one connection allows (no sleep between successes, 2 ms between failures)
and prints one JSON object per line:
  {"event": "ready", "master": "ip:port"}                 after the first acknowledged write
  {"event": "switch", "old": ..., "new": ..., "gap_ms": ..., "errors": n}
        when a write is acknowledged by a different master than the previous one; gap_ms is the
        time from the last acknowledged write on the old master to the first on the new one.

The sentinels it follows are given with --sentinel (repeat); point it at the coordinator or at
the real sentinels, nothing else differs.
"""

import argparse
import json
import sys
import time


def emit(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentinel", action="append", required=True, help="HOST:PORT")
    parser.add_argument("--name", required=True)
    parser.add_argument("--label", required=True)
    parser.add_argument("--seconds", type=float, default=3600.0)
    args = parser.parse_args()

    from redis.sentinel import Sentinel

    sentinels = [(h, int(p)) for h, p in (s.rsplit(":", 1) for s in args.sentinel)]
    sentinel = Sentinel(sentinels, socket_timeout=0.5, socket_connect_timeout=0.5)
    master = sentinel.master_for(args.name, socket_timeout=0.5, socket_connect_timeout=0.5)
    pool = master.connection_pool
    deadline = time.monotonic() + args.seconds
    last_ok = None
    last_master = None
    errors = 0
    i = 0
    while time.monotonic() < deadline:
        i += 1
        try:
            master.set(f"bench:{args.label}:{i % 1024}", i)
            now = time.monotonic()
            conn = pool.get_connection()
            try:
                where = f"{conn.host}:{conn.port}"
            finally:
                pool.release(conn)
            if last_master is None:
                emit(event="ready", master=where)
            elif where != last_master:
                emit(
                    event="switch",
                    old=last_master,
                    new=where,
                    gap_ms=(now - last_ok) * 1000.0,
                    errors=errors,
                )
            last_master = where
            last_ok = now
            errors = 0
        except Exception:  # any failure is part of the gap; the next write tells where we are
            errors += 1
            time.sleep(0.002)


if __name__ == "__main__":
    main()
