// One agent per host connection per provider process. Every mutation of the host goes through its
// queue, and the operations that arrive together share one remote transaction: one lock, one
// listing per family, one atomic iptables-restore per family with every insert and delete, one
// confirming listing. Reads that arrive together share one listing.
import { findByTag, parseRuleset, parseSpec, parseVersion, placeRule, ruleText, shadowing } from "../rules";
import type { Position, Ruleset } from "../rules";
import { getSession } from "../ssh";
import type { Backend, CheckedConnection } from "../rules";
import type { Logger, Session } from "../ssh";
import {
  FAMILIES,
  LOCK,
  LOCK_FILE,
  LOCK_UNAVAILABLE,
  LOCK_WAIT,
  PREAMBLE,
  iptables,
  parseSections,
  section,
} from "./protocol";
import type { Family, Section, Sections } from "./protocol";
import { DETECT, OWNER, ownerError, ownerOf, parsePersistence, saveScript } from "./persist";
import type { PersistChange, Persistence } from "./persist";
import { adoptLines, findTwin } from "./adopt";
import { besideListing, judgeBeside } from "./beside";
import type { Beside } from "./beside";
import type { Twin } from "./adopt";
import { withDeleted, withInserted } from "./ruleset-text";
import { openShell } from "./shell";
import type { Shell } from "./shell";

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
  /** Says why the rule must not go in (it would cut off this connection), or nothing. */
  guard?: (origin: { clientAddress: string; serverPort: number }, family: Family) => string | undefined;
  /** The rule without its tag per family, as `iptables -S` prints it: a hand-made twin to look for. */
  twins?: Partial<Record<Family, string>>;
  /** Take the twin over in place (same line, counters kept) instead of inserting beside it. */
  adopt?: boolean;
}

export interface DeleteRequest {
  kind: "delete";
  table: string;
  chain: string;
  families: Family[];
  tag: string;
  /** Save the ruleset afterwards, so the rules files no longer hold the rule. */
  /** Says why the rule must not go (removing it would cut off this provider), or nothing; given the
   * listing (parsed) with the rule and without it. */
  guard?: (
    origin: { clientAddress: string; serverPort: number },
    family: Family,
    before: Ruleset,
    after: Ruleset,
  ) => string | undefined;
  persist: boolean;
}

/** A rule's persist flag changed: save the ruleset with it in (true) or without it (false). */
export interface PersistRequest {
  kind: "persist";
  table: string;
  chain: string;
  families: Family[];
  tag: string;
  persist: boolean;
}

export interface HostFacts {
  backend: Backend;
  version: string;
  hostKeyFingerprint: string;
  /** Listening sockets as "tcp/22", "udp/53"; undefined when the host cannot tell (no `ss`). */
  listening?: Set<string>;
  /** How this host saves its ruleset, and the firewall manager that owns its policy, if any. */
  persistence: Persistence;
  owner?: string;
}

export interface Placement {
  line: number;
  reason: string;
  /** The rule as `iptables -S` prints it. */
  rule: string;
  /** An untagged rule in the chain that is exactly this one: taken over when `adopted`, else left beside it. */
  twin?: Twin;
  adopted?: boolean;
  /** Where the rule is not effective at that line: what decides its packets otherwise, and their path. */
  shadowedBy?: string;
}

export interface InsertResult {
  facts: HostFacts;
  families: Partial<Record<Family, Placement>>;
  /** Docker and the host's nft tables, per family: what they do to the rule's packets. */
  beside: Partial<Record<Family, Beside>>;
  /** Where the ruleset was saved, when the request asked for it. */
  persisted?: Persistence;
}

export interface RuleState {
  line: number;
  rule: string;
  packets: number;
  bytes: number;
  /** What decides some of ours' packets otherwise, with their path; undefined when ours is effective. */
  shadowedBy?: string;
  /** Docker and the host's nft tables: what they do to the rule's packets. */
  beside: Beside;
}

export interface ReadResult {
  facts: HostFacts;
  families: Partial<Record<Family, RuleState>>;
}

/** A planned change in one family: its restore line and the line that undoes it. */
interface Planned extends Placement {
  apply: string;
  undo: string;
}
type Plans = Map<Op, Partial<Record<Family, Planned>>>;

/** A change to the host failed; nothing of that operation is left on the host. */
export class HostError extends Error {}
/** A rule with this tag is on the host already (the rule being replaced by an identical one). */
export class TagTaken extends HostError {}
/** The rule is in the tables of the iptables backend the host no longer uses (legacy / nf_tables). */
export class BackendSwitched extends HostError {}

/** A delete's result: the host facts, and the families where the rule was not found (already gone). */
export interface DeleteResult extends HostFacts {
  absent: Family[];
}
/** iptables-restore refused a batch; nothing of it was applied. */
class RestoreRefused extends HostError {}

type Op =
  | { req: InsertRequest; resolve: (r: InsertResult) => void; reject: (e: unknown) => void }
  | { req: DeleteRequest | PersistRequest; resolve: (r: HostFacts) => void; reject: (e: unknown) => void };

/** How often a rule moved out of place by a writer that ignores the lock is put back. */
const FIXUPS = 5;

const agents = new Map<string, HostAgent>();

/** The agent of a host connection (one per pooled connection per process). */
export function hostAgent(conn: CheckedConnection, log: Logger): HostAgent {
  const session = getSession(conn, log);
  let a = agents.get(session.key);
  if (a?.session !== session) {
    a = new HostAgent(session);
    agents.set(session.key, a);
  }
  return a;
}

/** One iptables-save per family. */
const saves = (families: Family[], table: string) =>
  families.map((f) => section(`save${f}`, [`${iptables(f)}-save`, "-c", "-t", table])).join("\n");

function out(sections: Sections, name: string, what: string): string {
  const s = sections[name];
  if (!s) throw new HostError(`${what}: the host gave no answer`);
  if (s.code !== 0) throw new HostError(`${what} failed (exit ${s.code}): ${s.err || s.out}`);
  return s.out;
}

const saveOf = (s: Sections, f: Family) => out(s, `save${f}`, `${iptables(f)}-save`);

/** Each listing received is parsed once, however many operations of the batch (or reads) use it. */
const parsed = new WeakMap<Sections, Map<Family, Ruleset>>();
function rulesetOf(s: Sections, f: Family): Ruleset {
  const m = parsed.get(s) ?? parsed.set(s, new Map()).get(s)!;
  return m.get(f) ?? m.set(f, parseRuleset(saveOf(s, f))).get(f)!;
}

function restoreStep(f: Family, table: string, lines: string[]): string {
  return section(
    `restore${f}`,
    [`${iptables(f)}-restore`, "--noflush", "-w", String(LOCK_WAIT)],
    `*${table}\n${lines.join("\n")}\nCOMMIT\n`,
  );
}

/** `then` runs only if every section before it succeeded ($c is the last section's status). */
const ifOk = (then: string) => `if [ "$c" = 0 ]; then\n${then}\nfi`;

/** `-A CHAIN spec` → `-I CHAIN line spec` / `-D CHAIN spec`, as iptables-restore lines. */
const asInsert = (text: string, line: number) => text.replace(/^-A (\S+) /, `-I $1 ${line} `);
const asDelete = (text: string) => text.replace(/^-A /, "-D ");

/** Operations whose rule's place in the saved files changes: persisted inserts and deletes, flag changes. */
const asksSave = (op: Op) => op.req.persist || op.req.kind === "persist";

/** What the persistence step does for these operations: keep `persist: false` rules out of the
 * files (a list of their tags), and save for the operations that ask for it; undefined if nothing. */
function persistChange(ops: Op[]): PersistChange | undefined {
  const tags = (list: Op[]) => list.map((op) => op.req.tag);
  const savers = ops.filter(asksSave);
  const transient = tags(ops.filter((op) => op.req.kind !== "delete" && !op.req.persist));
  // A persisted rule's tag leaves the transient list too: a stale entry (its persist: false twin
  // removed by hand) would keep it out of the files.
  const persistent = tags(ops.filter((op) => op.req.kind === "delete" || op.req.persist));
  if (!savers.length && !transient.length && !persistent.length) return undefined;
  const present = savers
    .filter((op) => op.req.kind !== "delete" && op.req.persist)
    .map((op) => ({ tag: op.req.tag, families: familiesOf(op) }));
  const absent = [...transient, ...tags(savers.filter((op) => op.req.kind === "delete"))];
  return { transient, persistent, save: savers.length > 0, present, absent };
}

const familiesOf = (op: Op): Family[] =>
  op.req.kind === "insert" ? FAMILIES.filter((f) => op.req.kind === "insert" && op.req.specs[f]) : op.req.families;

const placements = (p: Partial<Record<Family, Planned>>): Partial<Record<Family, Placement>> =>
  Object.fromEntries(Object.entries(p).map(([f, { apply: _a, undo: _u, ...placement }]) => [f, placement]));

function parseListening(text: string): Set<string> {
  const set = new Set<string>();
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 5) set.add(`${f[0]}/${f[4].slice(f[4].lastIndexOf(":") + 1)}`);
  }
  return set;
}

export class HostAgent {
  private queue: Op[] = [];
  private draining = false;
  private pendingRead?: { families: Set<Family>; table: string; result: Promise<Sections> };
  /** What does not change while the provider runs: the backend, its version, the persistence mechanism. */
  private stable?: Pick<HostFacts, "backend" | "version" | "persistence">;

  constructor(readonly session: Session) {}

  /** Listing commands: the facts not known yet, listening sockets and the policy owner if asked for, the rulesets. */
  private listing(
    families: Family[],
    table: string,
    want: { listening?: boolean; owner?: boolean; beside?: boolean } = {},
  ): string {
    const parts = this.stable ? [] : [section("version", ["iptables", "--version"]), DETECT];
    if (want.listening) parts.push(section("listening", ["ss", "-H", "-l", "-n", "-t", "-u"]));
    if (want.owner) parts.push(OWNER);
    if (want.beside) parts.push(besideListing(families));
    return [...parts, saves(families, table)].join("\n");
  }

  insert(req: InsertRequest): Promise<InsertResult> {
    return new Promise((resolve, reject) => this.enqueue({ req, resolve, reject }));
  }

  delete(req: DeleteRequest): Promise<DeleteResult> {
    return new Promise((resolve, reject) => this.enqueue({ req, resolve: resolve as (r: HostFacts) => void, reject }));
  }

  /**
   * Refuses to call a rule gone that is in the tables of the other iptables backend: the host was
   * switched between legacy and nf_tables after the rule was made (the kernel still applies both),
   * and dropping it from state would let the next up add a second copy. Reads the other backend's
   * tables with its own -save tools, where the host has them (nothing is loaded or created).
   */
  async refuseIfSwitched(table: string, chain: string, tag: string, families: Family[]): Promise<void> {
    const now = this.stable?.backend;
    if (!now || !families.length) return;
    const other = now === "nf_tables" ? "legacy" : "nf_tables";
    const tool = (f: Family) => `${iptables(f)}-${other === "legacy" ? "legacy" : "nft"}-save`;
    const r = await this.session.run(
      PREAMBLE +
        families
          .map((f) =>
            section(`other${f}`, { script: `if command -v ${tool(f)} >/dev/null 2>&1; then ${tool(f)} -c; fi` }),
          )
          .join("\n"),
    );
    const sections = parseSections(r.stdout);
    const there = families.filter((f) => {
      const s = sections[`other${f}`];
      return s?.code === 0 && !!findByTag(parseRuleset(s.out), table, chain, tag);
    });
    if (!there.length) return;
    const short = (b: string) => (b === "legacy" ? "legacy" : "nft");
    throw new BackendSwitched(
      `the rule tagged ${tag} is not in the ${now} tables that iptables on ${this.session.target} uses now ` +
        `(iptables ${this.stable!.version}), but in its ${other} tables (${there.map(iptables).join(", ")}): the host's iptables ` +
        `was switched from ${other} to ${now} after the rule was made, and the kernel still applies both. No rule was added or removed. ` +
        `Switch back (Debian, Ubuntu: update-alternatives --set iptables /usr/sbin/iptables-${short(other)}, and the same for ip6tables), ` +
        `or move the ${other} rules over (iptables-${short(other)}-save | iptables-${short(now)}-restore, and the same for ip6tables) ` +
        `and clear the ${other} tables; then run pulumi refresh again`,
    );
  }

  /** Saves the ruleset with (persist) or without (not persist) the rule tagged `tag`. */
  persist(req: PersistRequest): Promise<HostFacts> {
    return new Promise((resolve, reject) => this.enqueue({ req, resolve, reject }));
  }

  /** Live state of the rule with this tag, per family; undefined where it is gone. */
  async read(table: string, chain: string, tag: string, families: Family[]): Promise<ReadResult> {
    const sections = await this.list(table, families);
    const result: ReadResult = { facts: this.facts(sections, families), families: {} };
    for (const f of families) {
      const rs = rulesetOf(sections, f);
      const found = findByTag(rs, table, chain, tag);
      if (found) {
        result.families[f] = {
          line: found.line,
          rule: found.text,
          packets: found.counters?.packets ?? 0,
          bytes: found.counters?.bytes ?? 0,
          shadowedBy: shadowing(rs, { table, chain: found.chain, line: found.line })?.why,
          beside: this.beside(sections, f, { table, chain: found.chain, spec: found }, result.facts),
        };
      }
    }
    return result;
  }

  /** One listing for every read of the same table that arrives while it is being gathered. */
  private list(table: string, families: Family[]): Promise<Sections> {
    let p = this.pendingRead;
    if (!p || p.table !== table) {
      const fams = new Set<Family>();
      const result = new Promise<void>((r) => setTimeout(r, 2)).then(async () => {
        if (this.pendingRead === p) this.pendingRead = undefined;
        const r = await this.session.run(
          PREAMBLE +
            this.listing(
              FAMILIES.filter((f) => fams.has(f)),
              table,
              { beside: table === "filter" },
            ),
        );
        return parseSections(r.stdout);
      });
      p = this.pendingRead = { families: fams, table, result };
    }
    for (const f of families) p.families.add(f);
    return p.result;
  }

  /** Docker's and nft's say on a rule (from a listing that included besideListing). */
  private beside(sections: Sections, f: Family, rule: Parameters<typeof judgeBeside>[2], facts: HostFacts): Beside {
    return judgeBeside(sections, f, rule, { backend: facts.backend, name: this.session.target });
  }

  private facts(sections: Sections, families: Family[]): HostFacts {
    if (!this.stable) {
      const v = parseVersion(out(sections, "version", "iptables --version"));
      const persistence = parsePersistence(out(sections, "persistence", "finding how the host saves its ruleset"));
      this.stable = { backend: v.backend, version: v.version, persistence };
    }
    return {
      ...this.stable,
      hostKeyFingerprint: this.session.hostKey?.fingerprint ?? "",
      listening: sections.listening?.code === 0 ? parseListening(sections.listening.out) : undefined,
      owner: sections.owner
        ? ownerOf(
            sections.owner.out,
            families.map((f) => rulesetOf(sections, f)),
          )
        : undefined,
    };
  }

  private enqueue(op: Op): void {
    this.queue.push(op);
    if (this.draining) return;
    this.draining = true;
    // The engine starts many operations within a millisecond or two: let them join one batch.
    setTimeout(() => void this.drain(), 2);
  }

  private async drain(): Promise<void> {
    while (this.queue.length) {
      const table = this.queue[0].req.table;
      const batch = this.queue.filter((op) => op.req.table === table);
      this.queue = this.queue.filter((op) => op.req.table !== table);
      try {
        await this.transaction(table, batch);
      } catch (err) {
        if (!(err instanceof RestoreRefused) || batch.length === 1) {
          for (const op of batch) op.reject(err);
          continue;
        }
        // iptables refused the batch as a whole (nothing of it applied): one operation at a time,
        // so one bad rule fails alone.
        for (const op of batch) await this.transaction(table, [op]).catch((e) => op.reject(e));
      }
    }
    this.draining = false;
  }

  /**
   * Two steps of one remote conversation. First: lock, list. Then plan every operation against the
   * listing as the earlier ones leave it. Second: one atomic iptables-restore per family (each only if
   * the one before succeeded), the confirming listing, and the persistence save. An operation that
   * cannot be planned fails alone; a refused restore undoes the families already applied, so nothing
   * of the batch is left on the host.
   */
  private async transaction(table: string, batch: Op[]): Promise<void> {
    const wants = (op: Op, f: Family) => (op.req.kind === "insert" ? !!op.req.specs[f] : op.req.families.includes(f));
    const families = FAMILIES.filter((f) => batch.some((op) => wants(op, f)));
    const origin = batch.some((op) => op.req.kind !== "persist" && op.req.guard)
      ? await this.session.origin()
      : undefined;
    const want = {
      listening: batch.some((op) => op.req.kind === "insert"),
      owner: batch.some((op) => op.req.persist && op.req.kind !== "delete"),
      beside: table === "filter" && batch.some((op) => op.req.kind === "insert"),
    };

    const shell = await openShell(this.session);
    try {
      const first = await shell.step(`${PREAMBLE + LOCK}\n${this.listing(families, table, want)}`);
      if (first.lock?.code === LOCK_UNAVAILABLE)
        throw new HostError(`could not take the lock on ${this.session.target}: ${first.lock.err}`);
      if (first.lock?.code !== 0) {
        throw new HostError(
          `could not take ${LOCK_FILE} on ${this.session.target} within ${LOCK_WAIT}s: another pulumi-iptables run ` +
            `(another stack or operator) holds it; try again when it is done${first.lock?.err ? ` (${first.lock.err})` : ""}`,
        );
      }
      const facts = this.facts(first, families);
      // One parse of each listing per batch: each operation is planned against the ruleset as the
      // earlier ones leave it (edited, not listed or parsed again).
      const listed = new Map(families.map((f) => [f, rulesetOf(first, f)]));

      // Plan. An operation that cannot be planned in one family is dropped from all of them.
      const plans: Plans = new Map();
      const ok: Op[] = [];
      for (const op of batch) {
        try {
          const placed: Partial<Record<Family, Planned>> = {};
          const next = new Map(listed);
          for (const f of families.filter((g) => wants(op, g)))
            next.set(f, this.plan(op, f, next.get(f)!, placed, facts, origin));
          for (const [k, v] of next) listed.set(k, v);
          plans.set(op, placed);
          ok.push(op);
        } catch (err) {
          op.reject(err);
        }
      }

      // Apply, confirm and save in one step.
      const apply = families.filter((f) => ok.some((op) => plans.get(op)![f]));
      const change = persistChange(ok);
      const save = change && saveScript(facts.persistence, change);
      const restores = apply.map((f) =>
        ifOk(
          restoreStep(
            f,
            table,
            ok.flatMap((op) => plans.get(op)![f]?.apply ?? []),
          ),
        ),
      );
      const second = await shell.step(
        ["c=0", ...restores, ifOk(saves(families, table) + (save ? `\n${save}` : ""))].join("\n"),
      );
      const refused = apply.findIndex((f) => second[`restore${f}`]?.code !== 0);
      if (refused >= 0) {
        const f = apply[refused];
        await this.undo(shell, table, apply.slice(0, refused), ok, plans);
        throw new RestoreRefused(
          `${iptables(f)}-restore on ${this.session.target} refused the change, so none of it was applied: ${second[`restore${f}`]?.err || "no answer"}`,
        );
      }

      const { dropped, moved } = await this.confirm(shell, table, families, ok, plans, second, listed);
      const alive = ok.filter((op) => !dropped.has(op));
      let saved: Section | undefined = second.persist;
      if (change && (dropped.size || moved)) {
        // The files were written before rules moved back into place (or with a dropped one): again.
        const again = persistChange(alive);
        saved = again && (await shell.step(saveScript(facts.persistence, again))).persist;
      }
      for (const op of await this.settle(shell, table, facts, alive, plans, saved)) {
        const persisted = op.req.persist ? facts.persistence : undefined;
        if (op.req.kind === "insert") {
          const req = op.req;
          const beside = Object.fromEntries(
            Object.keys(plans.get(op)!).map((k) => {
              const f = Number(k) as Family;
              return [f, this.beside(first, f, { table, chain: req.chain, spec: parseSpec(req.specs[f]!) }, facts)];
            }),
          );
          (op.resolve as (r: InsertResult) => void)({ facts, families: placements(plans.get(op)!), persisted, beside });
        } else if (op.req.kind === "delete") {
          const planned = plans.get(op)!;
          const absent = op.req.families.filter((f) => !planned[f]);
          (op.resolve as (r: DeleteResult) => void)({ ...facts, absent });
        } else (op.resolve as (r: HostFacts) => void)(facts);
      }
    } finally {
      await shell.close();
    }
  }

  /** Plans one operation in one family against `rs`; returns the ruleset after it. */
  private plan(
    op: Op,
    f: Family,
    rs: Ruleset,
    placed: Partial<Record<Family, Planned>>,
    facts: HostFacts,
    origin?: { clientAddress: string; serverPort: number },
  ): Ruleset {
    if (op.req.persist && op.req.kind !== "delete" && facts.owner)
      throw new HostError(ownerError(facts.owner, this.session.target));
    const { table, chain, tag } = op.req;
    const found = findByTag(rs, table, chain, tag);
    if (op.req.kind === "persist") {
      if (!found) throw new HostError(`the rule tagged ${tag} is not on ${this.session.target} (run pulumi refresh)`);
      return rs;
    }
    if (op.req.kind === "delete") {
      if (!found) return rs; // already gone: success
      placed[f] = {
        line: found.line,
        reason: "delete",
        rule: found.text,
        apply: asDelete(found.text),
        undo: asInsert(found.text, found.line),
      };
      const after = withDeleted(rs, table, found.chain, found.line);
      const refusal = origin && op.req.guard?.(origin, f, rs, after);
      if (refusal) throw new HostError(refusal);
      return after;
    }
    if (found) throw new TagTaken(`a rule tagged ${tag} is already on ${this.session.target}`);
    const spec = op.req.specs[f]!;
    const text = ruleText(chain, spec);
    const twinText = op.req.twins?.[f];
    const twin = twinText === undefined ? undefined : findTwin(rs, table, chain, twinText);
    if (twin && op.req.adopt) {
      // The hand-made rule already decides these packets where it is: tag it there (no guard: nothing changes).
      const reason = `adopted: line ${twin.line} held this rule without a tag (${twin.rule}); tagged in place, counters kept (${twin.packets} packets, ${twin.bytes} bytes)`;
      placed[f] = { line: twin.line, reason, rule: text, twin, adopted: true, ...adoptLines(twin, text) };
      return withInserted(withDeleted(rs, table, chain, twin.line), table, chain, twin.line, text);
    }
    const refusal = origin && op.req.guard?.(origin, f);
    if (refusal) throw new HostError(refusal);
    const { line, reason, shadowedBy } = placeRule(rs, { table, chain, rule: spec, position: op.req.position });
    placed[f] = {
      line,
      reason,
      rule: text,
      twin,
      ...(shadowedBy && { shadowedBy: shadowedBy.why }),
      apply: asInsert(text, line),
      undo: asDelete(text),
    };
    return withInserted(rs, table, chain, line, text);
  }

  /**
   * Settles the persistence step's result: if the save failed, the runtime changes of the operations
   * that asked for it are rolled back (and the files saved again from what is live), so state and host
   * agree. Returns the operations that succeeded.
   */
  private async settle(
    shell: Shell,
    table: string,
    facts: HostFacts,
    ops: Op[],
    plans: Plans,
    saved: Section | undefined,
  ): Promise<Op[]> {
    if (!persistChange(ops) || saved?.code === 0) return ops;
    const savers = ops.filter(asksSave);
    const failed = savers.length ? savers : ops;
    await this.undo(shell, table, FAMILIES, failed, plans);
    if (savers.length)
      await shell.step(
        saveScript(facts.persistence, { transient: [], persistent: [], save: true, present: [], absent: [] }),
      );
    const { mechanism, files } = facts.persistence;
    const why = (saved?.err ?? "")
      .split("\n")
      .filter((l) => !l.startsWith("run-parts: executing"))
      .join("\n");
    const err = new HostError(
      `saving the ruleset on ${this.session.target} with ${mechanism} to ${files.join(" and ")} failed, so the change was rolled back: ${why || "no answer"}`,
    );
    for (const op of failed) op.reject(err);
    return ops.filter((op) => !failed.includes(op));
  }

  private async undo(shell: Shell, table: string, families: readonly Family[], ops: Op[], plans: Plans): Promise<void> {
    for (const f of families) {
      const lines = ops.flatMap((op) => plans.get(op)?.[f]?.undo ?? []).reverse();
      if (lines.length) await shell.step(restoreStep(f, table, lines));
    }
  }

  /**
   * Confirms every inserted rule with a fresh listing. A writer that ignores the lock may have moved
   * the chain between our listing and our restore: an `auto` rule that is shadowed now but was not in
   * the ruleset our plan expected (`expected`, per family) is moved to where placement says, a few
   * times at most. A rule that another rule of the same batch shadows, as planned, stays where it is. An operation whose rule was removed by
   * someone else, or cannot be kept in place, fails, and its rules (every family) are removed.
   * `listed` is the listing taken right after the restore. Returns the dropped operations and
   * whether anything was moved.
   */
  private async confirm(
    shell: Shell,
    table: string,
    families: Family[],
    ops: Op[],
    plans: Plans,
    listed: Sections,
    expected: Map<Family, Ruleset>,
  ): Promise<{ dropped: Set<Op>; moved: boolean }> {
    const dropped = new Set<Op>();
    const plannedSets = expected;
    const effectiveAsPlanned = (f: Family, chain: string, tag: string) => {
      const mine = findByTag(plannedSets.get(f)!, table, chain, tag);
      return !!mine && !shadowing(plannedSets.get(f)!, { table, chain: mine.chain, line: mine.line });
    };
    const inserts = ops.filter((op) => op.req.kind === "insert");
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) listed = await shell.step(saves(families, table));
      const rulesets = new Map(families.map((f) => [f, rulesetOf(listed, f)]));
      const changes = new Map<Family, string[]>();
      const change = (f: Family, ...lines: string[]) => (changes.get(f) ?? changes.set(f, []).get(f)!).push(...lines);
      for (const op of inserts) {
        const req = op.req as InsertRequest;
        const found = (f: Family) => findByTag(rulesets.get(f)!, table, req.chain, req.tag);
        let problem: string | undefined;
        for (const f of dropped.has(op) ? [] : families) {
          const planned = plans.get(op)![f];
          const rule = planned && found(f);
          if (!planned) continue;
          if (!rule) {
            problem = `the rule ${planned.rule} was removed from ${this.session.target} right after it was inserted (by another writer)`;
            break;
          }
          planned.line = rule.line;
          // What the rule's state reports is the listing's truth (another rule of the batch may shadow it).
          const shadow = shadowing(rulesets.get(f)!, { table, chain: rule.chain, line: rule.line });
          if (shadow) planned.shadowedBy = shadow.why;
          else delete planned.shadowedBy;
          // An adopted rule stays where its owner put it.
          if (planned.adopted || req.position !== "auto" || !shadow || !effectiveAsPlanned(f, req.chain, req.tag))
            continue;
          if (attempt >= FIXUPS) {
            problem = `the chain ${req.chain} on ${this.session.target} kept changing under another writer that ignores ${LOCK_FILE}, so the rule could not be kept in place and was removed`;
            break;
          }
          const without = withDeleted(rulesets.get(f)!, table, rule.chain, rule.line);
          const { line, reason } = placeRule(without, {
            table,
            chain: req.chain,
            rule: req.specs[f]!,
            position: "auto",
          });
          change(f, asDelete(rule.text), asInsert(rule.text, line));
          Object.assign(planned, {
            line,
            reason: `${reason} (moved back: another writer changed the chain while it was inserted)`,
          });
        }
        if (problem) {
          dropped.add(op);
          op.reject(new HostError(problem));
        }
        if (dropped.has(op)) {
          for (const f of families) {
            const rule = found(f);
            if (rule) change(f, asDelete(rule.text));
          }
        }
      }
      if (!changes.size) return { dropped, moved: attempt > 0 };
      if (attempt >= 2 * FIXUPS)
        throw new HostError(
          `the chain on ${this.session.target} keeps changing under another writer that ignores ${LOCK_FILE}: rules could not be put in place`,
        );
      for (const [f, lines] of changes) await shell.step(restoreStep(f, table, lines));
    }
  }
}
