// What the lifecycle asks of a host and what it gets back (declarations only).
import type { Backend, HostContext, OtherBackend, Position, Ruleset } from "../rules";
import type { Twin } from "./adopt";
import type { Beside } from "./beside";
import type { HandMade, Persistence } from "./persist";
import type { Origin } from "../ssh";
import type { Family } from "./protocol";

/** Where the provider's connection comes from, as far as the lockout guard needs it (the address it reached
 * and the interface it arrives on, where known). */
export type GuardOrigin = Pick<Origin, "clientAddress" | "serverPort"> &
  Partial<Pick<Origin, "serverAddress" | "inInterface">>;

/** Says why a change must not be made in a family (it would cut off the provider's SSH), or nothing: given
 * the listing (parsed) before and after the change, and the host beside the table (interfaces, addresses,
 * nat, the other backend). */
export type Guard = (
  origin: GuardOrigin,
  family: Family,
  before: Ruleset,
  after: Ruleset,
  host?: HostContext,
) => string | undefined;

export interface InsertRequest {
  kind: "insert";
  table: string;
  chain: string;
  /** Rule spec per family (argv without `-A CHAIN`), each carrying the identity tag. */
  specs: Partial<Record<Family, string[]>>;
  tag: string;
  position: Position;
  /** Save the ruleset with the host's mechanism afterwards (otherwise keep this rule out of it). */
  persist: boolean;
  /** Says why the rule must not go in (it would cut off this connection), or nothing; given the listing
   * (parsed) without the rule and with it where placement put it, and the host beside the table. */
  guard?: Guard;
  /** The rule without its tag per family, as `iptables -S` prints it: a hand-made twin to look for. */
  twins?: Partial<Record<Family, string>>;
  /** Take the twin over in place (same line, counters kept) instead of inserting beside it. */
  adopt?: boolean;
  /** The change may cut off new SSH connections: confirm it over a fresh one. */
  freshConfirm?: boolean;
  /** The next tags of this rule's lineage (and their specs): used in turn when a rule with the tag
   * before is on the host already, which the create then takes over (see provider/lineage.ts, lineage). */
  successors?: { tag: string; specs: Partial<Record<Family, string[]>> }[];
  /** Set by planning: this rule's own earlier rules on the host (their exact texts per family) that it
   * replaces in place, and their tags. */
  takeover?: Partial<Record<Family, string>>[];
  tookOver?: string[];
  /** A comment-only change: per family, the recorded rule (exact text) this one takes the place of, at
   * its line with its counters (host/rewrite.ts). */
  rewrites?: Partial<Record<Family, string>>;
  /** With `rewrites`, for an adopted rule with persist: false: the hand-made rule the boot files keep in
   * its place, under its new text. */
  handMade?: HandMade[];
}

/** What every request about a rule recorded in state carries. */
interface RecordedRequest {
  table: string;
  chain: string;
  families: Family[];
  tag: string;
  /** The rule per family exactly as rendered and recorded at create (tag included): the only rule acted on. */
  rules: Partial<Record<Family, string>>;
  /** Save the ruleset afterwards (the rules files then hold the rule, or no longer do). */
  persist: boolean;
}

export interface DeleteRequest extends RecordedRequest {
  kind: "delete";
  /** Says why the rule must not go (removing it would cut off this provider), or nothing; given the
   * listing (parsed) with the rule and without it. */
  guard?: Guard;
  freshConfirm?: boolean;
  /** A rule adopted with persist: false is given back, not deleted: per family, the hand-made rule
   * (as `iptables -S` prints it) that takes its place, at its line with its counters. */
  giveBack?: Partial<Record<Family, string>>;
}

/** A rule's persist flag changed: save the ruleset with it in (true) or without it (false). */
export interface PersistRequest extends RecordedRequest {
  kind: "persist";
  freshConfirm?: undefined;
  /** Turned off on an adopted rule: the hand-made rule the files hold in its place, per family. */
  handMade?: HandMade[];
}

/** A position "auto" rule out of effect goes back where placement now says (heal.ts, in provider/):
 * the rule exactly as recorded (`rules`) is deleted and inserted at that line, counters kept, in one
 * restore; where no line makes it effective, or it is there already, nothing changes and the placement
 * says why. */
export interface MoveRequest extends RecordedRequest {
  kind: "move";
  /** As InsertRequest's: says why the rule must not go in at its new line. */
  guard?: Guard;
  freshConfirm?: boolean;
}

export type ChangeRequest = InsertRequest | DeleteRequest | PersistRequest | MoveRequest;

export interface HostFacts {
  backend: Backend;
  version: string;
  hostKeyFingerprint: string;
  /** Listening sockets as "tcp/22", "udp/53"; undefined when the host cannot tell (no `ss`). */
  listening?: Set<string>;
  /** The interfaces ordinary packets arrive on (up, not loopback); undefined when the listing could not tell. */
  interfaces?: string[];
  /** The host's own addresses per family (not loopback, not link-local); undefined when the listing could not tell. */
  addresses?: Partial<Record<Family, string[]>>;
  /** Each family's nat table as listed beside a rule on INPUT (besideListing), where it was. */
  nat?: Partial<Record<Family, Ruleset>>;
  /** Each family's tables in the other iptables backend, where the host has some (./second). */
  other?: Partial<Record<Family, OtherBackend>>;
  /** How this host saves its ruleset, and the firewall manager that owns its policy, if any. */
  persistence: Persistence;
  owner?: string;
}

export interface Placement {
  /** The line it went in at. */
  line: number;
  /** The line the confirming listing shows it at, when known (rules that went in above it later move it). */
  now?: number;
  reason: string;
  /** The rule as `iptables -S` prints it. */
  rule: string;
  /** An untagged rule in the chain that is exactly this one: taken over when `adopted`, else left beside it. */
  twin?: Twin;
  adopted?: boolean;
  /** Where the rule is not effective at that line: what decides its packets otherwise, and their path. */
  shadowedBy?: string;
  /** Tags of this resource's own identical rules it replaced in place (a failed earlier try's, or the
   * one an identical replacement replaces). */
  tookOver?: string[];
}

/** What a change did: the facts of the host, and per family where the rule is. */
export interface ChangeResult {
  /** The rule's tag (for an insert, the lineage's tag planning chose). */
  tag: string;
  facts: HostFacts;
  families: Partial<Record<Family, Placement>>;
  /** Where the ruleset was saved, when the request asked for it. */
  persisted?: Persistence;
  /** Docker and the host's nft tables, per family: what they do to an inserted rule's packets. */
  beside: Partial<Record<Family, Beside>>;
}

export interface RuleState {
  line: number;
  rule: string;
  /** Its counters, exact (64-bit): the state gives them as numbers. */
  packets: bigint;
  bytes: bigint;
  /** What decides some of ours' packets otherwise, with their path; undefined when ours is effective. */
  shadowedBy?: string;
  /** Docker and the host's nft tables: what they do to the rule's packets. */
  beside: Beside;
  /** When the rule is shadowed: the line position "auto" would choose now (in the chain without it), and
   * what would still shadow it there (no line makes it effective). */
  placeable?: { line: number; shadowedBy?: string };
  /** When the rule is shadowed by a rule the provider made (any PortRule's): that rule's tag. */
  shadowTag?: string;
}

export interface ReadResult {
  facts: HostFacts;
  families: Partial<Record<Family, RuleState>>;
  /** Families whose listing holds rules that carry the tag but are not exactly the recorded rule
   * (named in a warning): the rule may be live in another form, so it is not called gone. */
  carried: Family[];
}
