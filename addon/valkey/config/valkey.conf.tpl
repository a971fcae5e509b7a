# valkey.conf of the data pods: one per component, rendered by KubeBlocks with the
# ComponentDefinition's vars, and changed through the ParametersDefinition valkey-data-pd
# (Reconfiguring). Every pod's start script includes it first and then sets what the pod owns:
# bind, port and TLS, dir, aclfile, replica-announce-ip and masterauth, and the decision of
# `valkey-coordinator startup` (replicaof, replica-priority). Those are immutable or owned by the
# pod and are not set here.

# Network
tcp-backlog 511
timeout 0
tcp-keepalive 300
daemonize no
# Logs go to the container's standard output.
logfile ""
loglevel notice
databases 16
always-show-logo no
set-proc-title yes

# Persistence: an append-only file (fsync every second, RDB preamble) and RDB snapshots. The
# snapshot's file name and the AOF names are immutable: backup, restore and startup (which reads
# the replication offset of dump.rdb) rely on them.
save 3600 1 300 100 60 10000
stop-writes-on-bgsave-error yes
rdbcompression yes
rdbchecksum yes
dbfilename dump.rdb
rdb-del-sync-files no
appendonly yes
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
appendfsync everysec
no-appendfsync-on-rewrite no
auto-aof-rewrite-percentage 100
auto-aof-rewrite-min-size 67108864
aof-use-rdb-preamble yes
aof-load-truncated yes

# Replication. A small diskless delay: replicas that reconnect together (after a failover) share
# one transfer, and none waits long for it.
replica-serve-stale-data yes
replica-read-only yes
repl-diskless-sync yes
repl-diskless-sync-delay 1
repl-diskless-load disabled
repl-disable-tcp-nodelay no
repl-backlog-size 16777216
repl-timeout 60
# The priority a synced replica gets (startup starts every replica at 0 until its first sync,
# and a switchover changes priorities for its duration). A change takes effect at the restart.
replica-priority 100
replica-lazy-flush no

# Memory: at maxmemory writes fail with an OOM error; no key is ever evicted silently.
# maxmemory is 80 % of the container's memory limit (none without a limit), leaving room for
# replication buffers and the copy-on-write of BGSAVE and AOF rewrites.
maxmemory-policy noeviction
{{- $memory := default "0" (index . "MEMORY_LIMIT") | int64 }}
{{- if gt $memory 0 }}
maxmemory {{ div (mul $memory 4) 5 }}
{{- end }}
lazyfree-lazy-eviction no
lazyfree-lazy-expire no
lazyfree-lazy-server-del no
lazyfree-lazy-user-del no

# I/O threads: half the CPU limit, at least 1, at most 8 (1 with at most one CPU or no limit).
{{- $cpu := default "0" (index . "CPU_LIMIT") | int64 }}
{{- if gt $cpu 1 }}
io-threads {{ min (max (div $cpu 2) 1) 8 }}
{{- else }}
io-threads 1
{{- end }}

# Slow log
slowlog-log-slower-than 10000
slowlog-max-len 128

# Encodings (the engine's defaults, written out so that Reconfiguring shows them)
hash-max-listpack-entries 128
hash-max-listpack-value 64
list-max-listpack-size -2
list-compress-depth 0
set-max-intset-entries 512
set-max-listpack-entries 128
set-max-listpack-value 64
zset-max-listpack-entries 128
zset-max-listpack-value 64
hll-sparse-max-bytes 3000
