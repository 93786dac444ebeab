// A single-node OpenSearch for the search backend's tests, started from the
// jars Maven fetched (scripts/opensearch.sh): a Node with the HTTP transport
// (Netty4Plugin) and the common analyzers (CommonAnalysisPlugin, for the
// n-gram tokenizer and ASCII folding) loaded from the classpath, as the
// distribution loads them from its modules/ directory. Settings come from
// system properties prefixed `opensearch.` (path.home, http.port, ...).
//
// It stays in the foreground until SIGTERM, which closes the node.

import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public final class Launcher {
    private static final String PREFIX = "opensearch.";

    /** Node's constructor with classpath plugins is protected. */
    private static final class TestNode extends Node {
        TestNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        Settings.Builder settings = Settings.builder();
        for (String name : System.getProperties().stringPropertyNames()) {
            if (name.startsWith(PREFIX)) {
                settings.put(name.substring(PREFIX.length()), System.getProperty(name));
            }
        }
        Settings input = settings.build();
        Path config = Path.of(input.get("path.home")).resolve("config");
        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            input, java.util.Map.of(), config, () -> "chat-test");
        Node node = new TestNode(environment, List.of(Netty4Plugin.class, CommonAnalysisPlugin.class));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(10, TimeUnit.SECONDS);
            } catch (Exception error) {
                error.printStackTrace();
            }
            stopped.countDown();
        }));
        node.start();
        stopped.await();
    }
}
