// Jedis 7 `JedisSentinelPool` (RESP2, its default: no HELLO) with the coordinator as its only
// sentinel. Usage: Jedis7Client <HOST:PORT> <master-name> <seconds>
import java.util.Set;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.JedisSentinelPool;

public final class Jedis7Client {
    // 7.5 deprecates the pool in favour of 8's client; the pool is what Jedis 7 users run.
    @SuppressWarnings("deprecation")
    public static void main(String[] args) {
        Driver.started("jedis", Driver.version(Jedis.class, "redis.clients", "jedis"), "resp2");
        // Library defaults but for timeouts short enough to see a failover.
        DefaultJedisClientConfig config = DefaultJedisClientConfig.builder().timeoutMillis(500).build();
        try (JedisSentinelPool sentinel =
                new JedisSentinelPool(args[1], Set.of(HostAndPort.from(args[0])), config, config)) {
            Driver.run("jedis7", Double.parseDouble(args[2]), (key, value) -> {
                try (Jedis jedis = sentinel.getResource()) {
                    jedis.set(key, value);
                    Driver.readBack(key, value, jedis.get(key));
                    return Driver.where(jedis.configGet("replica-announce-ip", "port"));
                }
            });
        }
        System.exit(0);
    }
}
