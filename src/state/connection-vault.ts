// Accepted connections that outlive the handler (--state-dir). Firecracker
// sends its handshake once; a handler killed between accept(2) and the VM's
// record used to take the handshake with it, and the guest froze (or, once
// named, was killed). Now each connection is deposited, the moment it is
// accepted, as an SCM_RIGHTS message into a socket pair that the socket's
// keeper also holds: a descriptor in flight lives as long as the socket it is
// queued on, so the connection, its handshake still unread (it is only
// peeked until the VM is recorded), survives the handler. Once the VM is
// recorded, or refused, a "settled" message names the connection. A
// successor reads the vault and serves again the connections never settled.
// The vault is emptied whenever no handshake is under way.
import { fstatSync } from 'node:fs';
import { MessageReceiver, sendWithFds, socketPair } from '../../native/socket.js';
import { closeFd } from '../../native/fd.js';

const ACCEPTED = 0x41; // 'A'
const SETTLED = 0x53; // 'S'
const receiver = new MessageReceiver(1);

export class ConnectionVault {
  private constructor(
    /** Deposits are sent on this end ... */
    readonly sendFd: number,
    /** ... and queue on this one, read only when the vault is emptied or taken over. */
    readonly queueFd: number,
  ) {}

  static create(): ConnectionVault {
    const [sendFd, queueFd] = socketPair();
    return new ConnectionVault(sendFd, queueFd);
  }

  /** The vault a handler that is gone left with the keeper (descriptors taken from it). */
  static adopt(sendFd: number, queueFd: number): ConnectionVault {
    return new ConnectionVault(sendFd, queueFd);
  }

  /** Keeps `conn` until it is settled; false if the vault is full (the connection is then unprotected). */
  deposit(conn: number): boolean {
    return this.send(ACCEPTED, conn);
  }

  /** The connection's VM is recorded, or it was refused: a successor must not serve it again. */
  settle(conn: number): boolean {
    return this.send(SETTLED, conn);
  }

  /** Drops everything kept: call only when every deposited connection is settled. */
  empty(): void {
    for (const e of this.readAll()) closeFd(e.fd);
  }

  /**
   * Takes the connections deposited and never settled, in the order they
   * were accepted, and deposits them again at once (this handler may die
   * too); the settled ones are dropped. Each returned fd is the caller's.
   */
  unsettled(): number[] {
    const entries = this.readAll();
    const settled = new Set(entries.filter((e) => e.kind === SETTLED).map((e) => e.ino));
    const open: number[] = [];
    for (const e of entries) {
      if (e.kind === ACCEPTED && !settled.has(e.ino)) {
        this.deposit(e.fd);
        open.push(e.fd);
      } else closeFd(e.fd);
    }
    return open;
  }

  close(): void {
    closeFd(this.sendFd);
    closeFd(this.queueFd);
  }

  private send(kind: number, conn: number): boolean {
    try {
      return sendWithFds(this.sendFd, Buffer.of(kind), [conn]) === 1;
    } catch {
      return false; // full (EAGAIN), or its keeper's end is gone
    }
  }

  private readAll(): Array<{ kind: number; fd: number; ino: number }> {
    const out: Array<{ kind: number; fd: number; ino: number }> = [];
    for (;;) {
      let m;
      try {
        m = receiver.receive(this.queueFd);
      } catch {
        return out; // the vault is unusable: nothing more to read from it
      }
      if (m === null || m.bytes.length === 0) return out;
      for (const fd of m.fds.slice(1)) closeFd(fd);
      if (m.fds.length === 0) continue;
      const fd = m.fds[0];
      out.push({ kind: m.bytes[0], fd, ino: fstatSync(fd).ino });
    }
  }
}
