// Jedis 8 `RedisSentinelClient` (8.x's successor of `JedisSentineled`) speaking RESP3 to the
// sentinel and the master (8.0.2 sends no HELLO unless a protocol is set) with the coordinator
// as its only sentinel.
// Usage: Jedis8Client <HOST:PORT> <master-name> <seconds>
import java.util.Set;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.RedisProtocol;
import redis.clients.jedis.RedisSentinelClient;

public final class Jedis8Client {
    public static void main(String[] args) {
        Driver.started("jedis", Driver.version(RedisSentinelClient.class, "redis.clients", "jedis"), "resp3");
        // Library defaults but for the protocol and timeouts short enough to see a failover.
        DefaultJedisClientConfig config = DefaultJedisClientConfig.builder()
                .protocol(RedisProtocol.RESP3)
                .timeoutMillis(500)
                .build();
        try (RedisSentinelClient client = RedisSentinelClient.builder()
                .masterName(args[1])
                .sentinels(Set.of(HostAndPort.from(args[0])))
                .clientConfig(config)
                .sentinelClientConfig(config)
                .build()) {
            Driver.run("jedis8", Double.parseDouble(args[2]), (key, value) -> {
                client.set(key, value);
                Driver.readBack(key, value, client.get(key));
                return Driver.where(client.configGet("replica-announce-ip", "port"));
            });
        }
        System.exit(0);
    }
}
