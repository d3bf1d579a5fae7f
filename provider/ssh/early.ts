// Dial once per host per run, before the first batch needs it. The engine's Check (a new resource) and
// Diff (changes) show which hosts this run will change; nothing is dialled then, because `pulumi preview`
// and an `up` without changes must open no SSH connection. The first Create, Update or Delete shows that
// this is a real run: from then on, each of them starts dialling every host foreseen so far, so their
// handshakes (bounded by ./dials, yielding to dials that someone waits for) overlap with the work of
// the hosts already connected, instead of starting when their first batch arrives. Only hosts whose
// key is known already (`hostKey` given, or pinned from state) are dialled early: a host whose pin
// from state has not been loaded yet (the Diff of its existing rules still to come) must not be
// dialled trusting whatever key answers, and credentials must not go to an impostor sooner than a
// create would send them. The others wait for their own first batch.
import { isUnknown } from "../rules";
import type { CheckedConnection } from "../rules";
import { pinsOf } from "./hostkey";
import { addressOf, sessionKey } from "./pool";
import { getSession } from "./session";

/** Connections that this run's pending changes will use, not dialled in advance yet. */
// Process-wide: Check and Diff fill it, and the run's first Create, Update or Delete (a later call) dials it.
const foreseen = new Map<string, CheckedConnection>();

/** Remembers a connection that a pending change will use (a connection not known yet is left out). */
export function foresee(conn: unknown): void {
  if (!conn || typeof conn !== "object" || isUnknown(conn)) return;
  const c = conn as CheckedConnection;
  if (typeof c.host !== "string" || typeof c.user !== "string" || typeof c.port !== "number") return;
  foreseen.set(sessionKey(c), c);
}

/** Is the host's key known before its first connection (given, or pinned for its address)? */
const known = (c: { host: string; port: number; hostKey?: string }) => !!c.hostKey || pinsOf(addressOf(c)).length > 0;
const keyKnown = (c: CheckedConnection) => known(c) && (!c.proxy || known(c.proxy));

/** A Create, Update or Delete is starting: this run changes hosts. Starts dialling every host foreseen
 * whose key is known (the others stay foreseen: a later call dials them once a pin is loaded). */
export function dialForeseen(): void {
  for (const [key, c] of foreseen) {
    if (!keyKnown(c)) continue;
    foreseen.delete(key);
    getSession(c).dialEarly();
  }
}

/** How many connections are foreseen and not dialled yet (tests). */
export const foreseenCount = () => foreseen.size;
