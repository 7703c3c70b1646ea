// com.sun.net.httpserver, unmodified: every response is what
// HttpExchange.getRemoteAddress() says about the peer.
// Usage: java CompatHttpServer HOST PORT (HOST 0.0.0.0 with
// -Djava.net.preferIPv4Stack=true: AF_INET; otherwise an AF_INET6 socket,
// dual-stack, whatever HOST is).
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class CompatHttpServer {
    public static void main(String[] args) throws Exception {
        InetSocketAddress at = new InetSocketAddress(args[0], Integer.parseInt(args[1]));
        HttpServer server = HttpServer.create(at, 16);
        server.createContext("/", exchange -> {
            InetSocketAddress peer = exchange.getRemoteAddress();
            byte[] body = (peer.getAddress().getHostAddress() + " " + peer.getPort() + "\n")
                    .getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
