/**
 * A TCP proxy (node:net) in the test process, for network faults between real processes: put one
 * in front of a listener, tell the other side to connect to the proxy, then `cut()` and `heal()`.
 *
 *   forwarding --cut(mode)--> cut --heal()--> forwarding
 *
 * - cut('refuse'): open connections are destroyed and the proxy stops listening: a new connect
 *   fails with ECONNREFUSED, as to a host that answers with RST. Clients that try the next
 *   bootstrap broker only when a connect fails (ours) move on, as they would in a real partition
 *   where the connect times out. heal() listens again on the same port.
 * - cut('blackhole'): open connections are destroyed; new ones are accepted (the kernel completes
 *   the handshake) and held without forwarding a byte: requests never get an answer, as across a
 *   dead link, until heal(), which destroys them so the peer reconnects. Harsher than a real
 *   partition for a client's connect, which succeeds here.
 * - refuseFrom(pid): connections whose client socket belongs to process `pid` are destroyed and
 *   refused, others keep working. A proxy cannot tell clients apart by address (everything
 *   comes from 127.0.0.1), so the owner is looked up in /proc (Linux only): the client socket's
 *   inode in /proc/net/tcp, then that inode among the fds of `pid`. This lets a test cut one
 *   broker's outgoing connections to the others while the test's own clients still get through.
 *
 * The upstream may be set after start (setTarget): connections that arrive before it is known
 * wait for it, so a broker can advertise its proxy before it has bound its own port.
 */
import fs from 'node:fs';
import net from 'node:net';

export type CutMode = 'refuse' | 'blackhole';

export interface ProxyTarget {
  host: string;
  port: number;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | null;
}

export class TcpProxy {
  private target: ProxyTarget | null;
  private targetWaiters: (() => void)[] = [];
  private mode: CutMode | null = null;
  private readonly pairs = new Set<Pair>();
  /** Blackholed connections, held until heal(). */
  private readonly held = new Set<net.Socket>();
  private readonly refusedPids = new Set<number>();
  /** Connections forwarded since start, for tests of the proxy itself. */
  forwardedCount = 0;

  private server: net.Server | null;

  private constructor(server: net.Server, readonly port: number, target: ProxyTarget | null, readonly name: string) {
    this.server = server;
    this.target = target;
  }

  /** Listens on 127.0.0.1 on a free port. `target` may come later, through setTarget. */
  static async start(options: { target?: ProxyTarget; name?: string } = {}): Promise<TcpProxy> {
    let proxy: TcpProxy | null = null;
    const server = await listen(0, (client) => proxy!.accept(client));
    const port = (server.address() as net.AddressInfo).port;
    proxy = new TcpProxy(server, port, options.target ?? null, options.name ?? `proxy:${port}`);
    return proxy;
  }

  /** HOST:PORT clients connect to. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  get isCut(): boolean {
    return this.mode !== null;
  }

  /** Connections forwarded right now. */
  get openCount(): number {
    return this.pairs.size;
  }

  /** Connections held by a blackhole right now. */
  get heldCount(): number {
    return this.held.size;
  }

  setTarget(target: ProxyTarget): void {
    this.target = target;
    for (const wake of this.targetWaiters.splice(0)) wake();
  }

  cut(mode: CutMode = 'refuse'): void {
    this.mode = mode;
    if (mode === 'refuse' && this.server !== null) {
      this.server.close();
      this.server = null;
    }
    for (const pair of [...this.pairs]) this.destroyPair(pair);
  }

  /** Forwards again; resolves once the proxy listens (on the same port). */
  async heal(): Promise<void> {
    this.mode = null;
    for (const socket of [...this.held]) socket.destroy();
    this.held.clear();
    if (this.server !== null) return;
    // The port was free for a while: another process may hold it for a moment (TIME_WAIT does not
    // stop a listen). Retry until a deadline rather than fail the test on a rare clash.
    const deadlineMs = Date.now() + 10_000;
    for (;;) {
      try {
        this.server = await listen(this.port, (client) => this.accept(client));
        return;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || Date.now() > deadlineMs) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** Destroys and from now on refuses the connections that process `pid` opens to this proxy. */
  refuseFrom(pid: number): void {
    this.refusedPids.add(pid);
    for (const pair of [...this.pairs]) {
      if (ownedBy(pair.client.remotePort, this.port, this.refusedPids)) this.destroyPair(pair);
    }
  }

  allowFrom(pid: number): void {
    this.refusedPids.delete(pid);
  }

  async close(): Promise<void> {
    this.mode = 'refuse';
    const server = this.server;
    this.server = null;
    for (const socket of [...this.held]) socket.destroy();
    this.held.clear();
    this.refusedPids.clear();
    for (const pair of [...this.pairs]) this.destroyPair(pair);
    for (const wake of this.targetWaiters.splice(0)) wake();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined);
    if (this.mode === 'blackhole') {
      this.held.add(client);
      client.once('close', () => this.held.delete(client));
      return;
    }
    if (this.mode === 'refuse' || (this.refusedPids.size > 0 && ownedBy(client.remotePort, this.port, this.refusedPids))) {
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, upstream: null };
    this.pairs.add(pair);
    client.once('close', () => this.destroyPair(pair));
    void this.forward(pair);
  }

  private async forward(pair: Pair): Promise<void> {
    while (this.target === null) {
      await new Promise<void>((resolve) => this.targetWaiters.push(resolve));
      if (!this.pairs.has(pair)) return;
    }
    if (!this.pairs.has(pair)) return;
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    pair.upstream = upstream;
    // The upstream is down (a killed broker): reset the client, as the broker's own port would.
    upstream.once('error', () => {
      if (this.pairs.delete(pair)) pair.client.resetAndDestroy();
    });
    upstream.once('close', () => this.destroyPair(pair));
    upstream.once('connect', () => {
      this.forwardedCount++;
      pair.client.pipe(upstream);
      upstream.pipe(pair.client);
      pair.client.resume();
    });
  }

  private destroyPair(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream?.destroy();
  }
}

function listen(port: number, onConnection: (client: net.Socket) => void): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true }, onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/**
 * Whether the socket connected from 127.0.0.1:`clientPort` to our `proxyPort` belongs to one of
 * `pids`. Reads /proc/net/tcp for the inode of the client's end, then the fds of each pid.
 */
function ownedBy(clientPort: number | undefined, proxyPort: number, pids: ReadonlySet<number>): boolean {
  if (clientPort === undefined || pids.size === 0) return false;
  const inode = clientSocketInode(clientPort, proxyPort);
  if (inode === null) return false;
  const link = `socket:[${inode}]`;
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // the process is gone
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === link) return true;
      } catch {
        // closed meanwhile
      }
    }
  }
  return false;
}

/** The inode of the TCP socket whose local port is `localPort` and remote port `remotePort`. */
function clientSocketInode(localPort: number, remotePort: number): string | null {
  let table: string;
  try {
    table = fs.readFileSync('/proc/net/tcp', 'utf8');
  } catch (error) {
    throw new Error(`TcpProxy.refuseFrom needs Linux's /proc/net/tcp: ${(error as Error).message}`);
  }
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    const local = Number.parseInt(fields[1]!.split(':')[1]!, 16);
    const remote = Number.parseInt(fields[2]!.split(':')[1]!, 16);
    if (local === localPort && remote === remotePort) return fields[9]!;
  }
  return null;
}
