// A TCP forwarder for network-failure tests. pause() turns it into a black hole: bytes on open
// connections (and on new ones) are swallowed and nothing is closed, like a silently dropped path
// (a dead NAT entry, a pulled cable upstream). resume() forwards again for new connections; the
// connections that lived through the black hole stay dead, as they would on a real network.

import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private server: Server | undefined;
  private blackhole = false;
  private readonly sockets = new Set<Socket>();
  port = 0;
  connections = 0;

  constructor(
    private readonly targetHost: string,
    private targetPort: number,
  ) {}

  async start(port = 0): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Where new connections go (e.g. a restarted server on another port). */
  retarget(port: number): void {
    this.targetPort = port;
  }

  pause(): void {
    this.blackhole = true;
  }

  resume(): void {
    this.blackhole = false;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private accept(client: Socket): void {
    this.connections++;
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    if (this.blackhole) {
      client.on('data', () => {}); // swallowed; the connection stays open and silent
      return;
    }
    const upstream = connect(this.targetPort, this.targetHost);
    this.sockets.add(upstream);
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      if (!this.blackhole) client.destroy();
    });
    upstream.on('error', () => {});
    client.on('close', () => {
      if (!this.blackhole) upstream.destroy();
    });
    // Forward only while not paused; once paused, this connection never forwards again.
    let dead = false;
    client.on('data', (chunk: Buffer) => {
      if (this.blackhole) dead = true;
      if (!dead) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.blackhole) dead = true;
      if (!dead) client.write(chunk);
    });
  }
}
