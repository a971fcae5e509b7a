// Lettuce 7 `MasterReplica` over a sentinel `RedisURI` whose only sentinel is the coordinator,
// reading from and writing to the upstream. Usage: LettuceClient <HOST:PORT> <master-name>
// <seconds> <resp2|resp3>
import io.lettuce.core.ClientOptions;
import io.lettuce.core.ReadFrom;
import io.lettuce.core.RedisClient;
import io.lettuce.core.RedisURI;
import io.lettuce.core.api.sync.RedisCommands;
import io.lettuce.core.codec.StringCodec;
import io.lettuce.core.masterreplica.MasterReplica;
import io.lettuce.core.masterreplica.StatefulRedisMasterReplicaConnection;
import io.lettuce.core.protocol.ProtocolVersion;
import java.time.Duration;

public final class LettuceClient {
    public static void main(String[] args) {
        String protocol = args[3];
        Driver.started("lettuce", Driver.version(RedisClient.class, "io.lettuce", "lettuce-core"), protocol);
        HostAndPort sentinel = HostAndPort.parse(args[0]);
        RedisURI uri = RedisURI.Builder.sentinel(sentinel.host, sentinel.port, args[1])
                .withTimeout(Duration.ofMillis(500))
                .build();
        RedisClient client = RedisClient.create();
        client.setOptions(ClientOptions.builder()
                .protocolVersion(protocol.equals("resp2") ? ProtocolVersion.RESP2 : ProtocolVersion.RESP3)
                .build());
        StatefulRedisMasterReplicaConnection<String, String> connection =
                MasterReplica.connect(client, StringCodec.UTF8, uri);
        connection.setReadFrom(ReadFrom.UPSTREAM);
        connection.setTimeout(Duration.ofMillis(500));
        RedisCommands<String, String> commands = connection.sync();
        Driver.run("lettuce-" + protocol, Double.parseDouble(args[2]), (key, value) -> {
            commands.set(key, value);
            Driver.readBack(key, value, commands.get(key));
            return Driver.where(commands.configGet("replica-announce-ip", "port"));
        });
        connection.close();
        client.shutdown();
        System.exit(0);
    }

    private record HostAndPort(String host, int port) {
        static HostAndPort parse(String text) {
            int colon = text.lastIndexOf(':');
            return new HostAndPort(text.substring(0, colon), Integer.parseInt(text.substring(colon + 1)));
        }
    }
}
