/**
 * Puts a RequestHandler on a socket (Deno.serve; loopback unless told otherwise) and shuts it down
 * gracefully: refuse new requests, let those accepted finish, then close.
 */
import type { RequestHandler } from "./handler.ts";

export interface ListenOptions {
  /** Default 127.0.0.1: the server has no authentication. */
  hostname?: string;
  /** 0 picks a free port. */
  port?: number;
  onListen?: (url: string) => void;
}

export interface RunningServer {
  url: string;
  port: number;
  /** Stops accepting, waits for accepted requests (queued ones too) to finish. */
  shutdown(): Promise<void>;
  /** Resolves when the server has closed. */
  finished: Promise<void>;
}

export function listen(handler: RequestHandler, opts: ListenOptions = {}): Promise<RunningServer> {
  const hostname = opts.hostname ?? "127.0.0.1";
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return new Promise((resolve, reject) => {
    let port = -1;
    try {
      const server = Deno.serve({
        hostname,
        port: opts.port ?? 8000,
        // Called before Deno.serve returns: only note the port here.
        onListen: (addr) => port = addr.port,
        onError: (error) =>
          Response.json({ error: { message: String(error), type: "server_error" } }, { status: 500 }),
      }, handler.handle);
      const url = `http://${host}:${port}`;
      opts.onListen?.(url);
      resolve({
        url,
        port,
        shutdown: async () => {
          handler.opts.queue.close();
          await server.shutdown();
        },
        finished: server.finished,
      });
    } catch (error) {
      reject(error);
    }
  });
}
