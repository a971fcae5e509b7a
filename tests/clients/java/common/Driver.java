// The loop every Java driver shares: write through the client's current master, print one JSON
// object per line of what happened (the protocol of tests/clients/sentinel_client.py), for a
// scenario test to read. Each library's driver supplies only `Target`: how to write one key and
// read it back, and how to ask the node it wrote to which pod it is.
import java.io.InputStream;
import java.util.Map;
import java.util.Properties;

final class Driver {
    interface Target {
        /** Writes `key`, reads it back, then asks the same client which master took it
         *  (announced ip:port). */
        String writeAndLocate(String key, String value) throws Exception;
    }

    /** Fails unless a key read back what was written to it. */
    static void readBack(String key, String wrote, String read) {
        if (!wrote.equals(read)) {
            throw new IllegalStateException(key + " read back " + read + ", wrote " + wrote);
        }
    }

    private Driver() {}

    static synchronized void emit(String json) {
        System.out.println(json);
        System.out.flush();
    }

    static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : String.valueOf(text).toCharArray()) {
            if (c == '"' || c == '\\') {
                out.append('\\').append(c);
            } else if (c < 0x20) {
                out.append(' ');
            } else {
                out.append(c);
            }
        }
        return out.append('"').toString();
    }

    /** The announced address of the node a `CONFIG GET replica-announce-ip port` reply came from. */
    static String where(Map<String, String> config) {
        return config.get("replica-announce-ip") + ":" + config.get("port");
    }

    /** The version of a library from the Maven metadata inside its jar. */
    static String version(Class<?> inJar, String group, String artifact) {
        String path = "/META-INF/maven/" + group + "/" + artifact + "/pom.properties";
        try (InputStream in = inJar.getResourceAsStream(path)) {
            Properties properties = new Properties();
            properties.load(in);
            return properties.getProperty("version");
        } catch (Exception e) {
            return "unknown";
        }
    }

    static void started(String lib, String version, String protocol) {
        emit("{\"event\":\"started\",\"lib\":" + quote(lib) + ",\"version\":" + quote(version)
                + ",\"protocol\":" + quote(protocol) + "}");
    }

    /** Writes until `seconds` have passed; `ready` after the first write, `write` on every new
     *  master, `error` whenever the kind of failure changes. */
    static void run(String lib, double seconds, Target target) {
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        String lastMaster = null;
        String lastError = null;
        for (long i = 1; System.nanoTime() < deadline; i++) {
            try {
                String master = target.writeAndLocate("coordinator-e2e:" + lib + ":" + i, Long.toString(i));
                lastError = null;
                if (!master.equals(lastMaster)) {
                    emit("{\"event\":\"" + (lastMaster == null ? "ready" : "write") + "\",\"master\":"
                            + quote(master) + ",\"seq\":" + i + "}");
                    lastMaster = master;
                }
            } catch (Exception e) {
                String kind = e.getClass().getSimpleName();
                if (!kind.equals(lastError)) {
                    String detail = String.valueOf(e.getMessage());
                    emit("{\"event\":\"error\",\"error\":" + quote(kind) + ",\"detail\":"
                            + quote(detail.substring(0, Math.min(200, detail.length()))) + "}");
                    lastError = kind;
                }
                sleep(50);
            }
            sleep(20);
        }
    }

    static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
