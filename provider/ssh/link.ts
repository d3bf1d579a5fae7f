// A session's SSH connection: dialled on first use (./dial), dialled again after a close, its host key
// checked against the pins of its address, and kept alive (with the process) only while something is
// in flight.
import type * as net from "node:net";
import type { Client } from "ssh2";
import { DIALS_PER_HOST } from "../rules";
import type { CheckedConnection } from "../rules";
import { withDeadline } from "../util";
import { dial, preflight } from "./dial";
import type { Connected, DialPlan } from "./dial";
import { agentPath } from "./dial-config";
import type { DialSlot } from "./dials";
import { HostKeyError, redactError } from "./errors";
import { parseExpectedHostKey, pinHostKey, pinsOf, unmetPin } from "./hostkey";
import type { Pin } from "./hostkey";
import { startKeepalive } from "./keepalive";
import type { HostKeyInfo, Logger, SessionStats } from "./types";

/** How long a close waits for the server to end the connection before it drops the socket. */
const CLOSE_WAIT_MS = 2000;

/** The session a link serves: what it connects with, its names and counters, and what it is told. */
export interface LinkOwner {
  args: CheckedConnection;
  /** "user@host:port", for messages. */
  target: string;
  /** Where it connects to: host keys are pinned per address. */
  address: string;
  secrets: readonly (string | undefined)[];
  stats: SessionStats;
  log(): Logger;
  /** The jump host's link, when there is one. */
  jump?: Link;
  /** The connection closed: what was learnt over it is stale. */
  dropped(): void;
  /** The connection's key no longer meets a pin of its address: the session closes. */
  close(): Promise<void>;
}

/** The sshd a handshake involves, with its connection's limit (state written before maxConcurrentDials
 * existed has none: the default). */
const slotOf = (o: LinkOwner): DialSlot => ({ key: o.address, limit: o.args.maxConcurrentDials ?? DIALS_PER_HOST });

export class Link {
  /** The host key of the current (or last) connection. */
  hostKey?: HostKeyInfo;
  private connected?: Client;
  private connecting?: Promise<Client>;
  /** The dial under way was started in advance (`dialEarly`) and nobody waits for it yet. */
  private early = false;
  private sock?: net.Socket;
  private refs = 0;
  private kaTimer?: NodeJS.Timeout;

  constructor(readonly owner: LinkOwner) {}

  /** The connected client, connecting if need be (`early`: in advance, see Session.dialEarly). */
  client(early = false): Promise<Client> {
    if (this.connected) return Promise.resolve(this.connected);
    if (!early) this.wanted();
    if (!this.connecting) {
      this.early = early;
      const p = this.dial().catch((e) => {
        throw redactError(e, this.owner.secrets);
      });
      this.connecting = p;
      const clear = () => {
        if (this.connecting === p) this.connecting = undefined;
      };
      p.then(clear, clear);
    }
    return this.connecting;
  }

  /** The connected client, its host key checked again against pins added since it connected. */
  async verified(early = false): Promise<Client> {
    const client = await this.client(early);
    const unmet = this.hostKey && unmetPin(this.hostKey, this.pins());
    if (unmet) {
      const seen = this.hostKey as HostKeyInfo;
      await this.owner.close();
      throw new HostKeyError(this.owner.target, seen, unmet.fingerprint, unmet.source);
    }
    return client;
  }

  /** Forgets a client found closed, so that the next `client()` dials again. */
  forget(client: Client): void {
    if (this.connected === client) this.connected = undefined;
  }

  /** Closes the connection (the next `client()` dials again). */
  async close(): Promise<void> {
    const client = this.connected ?? (await this.connecting?.catch(() => undefined));
    this.connected = undefined;
    this.owner.dropped();
    if (!client) return;
    // Keep the process alive until the close completes: an idle session's socket is unref'd.
    this.sock?.ref();
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    client.end();
    const late = () => new Error(`no close from ${this.owner.target} within ${CLOSE_WAIT_MS} ms`);
    await withDeadline(closed, CLOSE_WAIT_MS, late, { ref: false }).catch(() => this.sock?.destroy());
  }

  // --- keeping the process alive only while something is in flight -----------------------------

  /** Something is in flight: the process stays alive, and the link is checked by keepalives. */
  hold(): void {
    if (++this.refs === 1) {
      this.sock?.ref();
      this.owner.jump?.hold();
      this.keepalive();
    }
  }

  /** What `hold` announced is over. */
  letGo(): void {
    if (this.refs > 0 && --this.refs === 0) {
      this.sock?.unref();
      this.owner.jump?.letGo();
      this.keepalive();
    }
  }

  /** Keepalives (see ./keepalive) every perDialTimeout/3 seconds while something is in flight, none when idle. */
  private keepalive(): void {
    clearInterval(this.kaTimer);
    this.kaTimer = undefined;
    const client = this.connected;
    if (this.refs === 0 || !client) return;
    this.kaTimer = startKeepalive(
      client,
      Math.max(1000, (this.owner.args.perDialTimeout * 1000) / 3),
      () => this.connected === client,
      () => this.owner.log().warn?.(`Connection to ${this.owner.target}: no answer to 3 keepalives, closing it`),
    );
  }

  // --- connecting -------------------------------------------------------------------------------

  /** Someone waits for this connection: its dial, and its jump host's, no longer yield to others. */
  private wanted(): void {
    this.early = false;
    this.owner.jump?.wanted();
  }

  /** The keys this host must present: the hostKey given, or else every key pinned for its address. */
  private pins(): Pin[] {
    const given = this.owner.args.hostKey;
    if (given) return [{ fingerprint: parseExpectedHostKey(given).fingerprint, source: "the hostKey given" }];
    return pinsOf(this.owner.address);
  }

  /** Dials (./dial), holding the process alive while it does, and adopts the connection made. */
  private async dial(): Promise<Client> {
    const plan = this.dialPlan();
    preflight(plan);
    this.hold();
    try {
      return this.adopt(await dial(plan));
    } finally {
      this.letGo();
    }
  }

  private dialPlan(): DialPlan {
    const { owner } = this;
    return {
      conn: owner.args,
      target: owner.target,
      secrets: owner.secrets,
      log: owner.log(),
      agent: agentPath(owner.args),
      pins: () => this.pins(),
      // The sshds a handshake involves: this host's, and its jump host's.
      slots: owner.jump ? [slotOf(owner), slotOf(owner.jump.owner)] : [slotOf(owner)],
      urgent: () => !this.early,
      // The jump host's connection, with its own pins met, before anything goes through it.
      jump: async () => owner.jump?.verified(this.early),
      stats: owner.stats,
    };
  }

  /** Makes a new connection this link's: its client, socket and host key, and the first pin of its address. */
  private adopt({ client, sock, hostKey }: Connected): Client {
    const { owner } = this;
    client.on("close", () => {
      if (this.connected !== client) return;
      this.connected = undefined;
      owner.dropped();
      owner.log().debug?.(`Connection to ${owner.target} closed`);
    });
    this.connected = client;
    this.sock = sock;
    this.hostKey = hostKey;
    // The first key seen at this address is required from then on, in this process.
    if (!owner.args.hostKey && pinsOf(owner.address).length === 0)
      pinHostKey(owner.address, hostKey.fingerprint, `the key it presented at its first connection in this run`);
    owner.stats.connections++;
    if (this.refs === 0) sock?.unref();
    else this.keepalive();
    owner.log().debug?.(`Connected to ${owner.target} (host key ${hostKey.fingerprint})`);
    return client;
  }
}
