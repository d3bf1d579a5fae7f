// The one error type of the host layer (go-iptables' `Error` is the model): where it happened, the
// remote command, its exit status and stderr, and methods that classify it. Messages say what is on
// the host now (only as far as a listing showed it) and what the host will do by itself.

/** What went wrong, as the methods below read it. */
export type HostFailure =
  /** Another run holds the host's lock. */
  | "lock-busy"
  /** iptables-restore refused a batch: nothing of it went in (in that family). */
  | "refused"
  /** A rule with the identity tag, but another spec, is on the host already. */
  | "tag-taken"
  /** A remote step did not finish within its deadline. */
  | "deadline"
  /** The connection or the remote shell ended in the middle of a step. */
  | "lost"
  /** The request cannot be done on this host as it is (planning, lockout guard, policy owner). */
  | "refusal"
  /** The rule is in the tables of the iptables backend the host no longer uses (legacy / nf_tables). */
  | "backend-switched"
  /** The save to the boot files failed. */
  | "save"
  /** Anything else a command reported. */
  | "command";

export interface HostErrorFields {
  kind: HostFailure;
  /** "user@host:port" */
  target: string;
  /** The remote command (or the name of the step) that failed. */
  command?: string;
  /** Its exit status, when it had one. */
  status?: number | null;
  stderr?: string;
}

export class HostError extends Error {
  override name = "HostError";
  readonly kind: HostFailure;
  readonly target: string;
  readonly command?: string;
  readonly status?: number | null;
  readonly stderr?: string;

  constructor(message: string, fields: HostErrorFields, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = fields.kind;
    this.target = fields.target;
    this.command = fields.command;
    this.status = fields.status;
    this.stderr = fields.stderr;
  }

  /** iptables-restore refused the batch: nothing of it was applied in that family. */
  isRestoreRefused(): boolean {
    return this.kind === "refused";
  }
  /** The identity tag is taken by a rule with another spec. */
  isTagTaken(): boolean {
    return this.kind === "tag-taken";
  }
  isLockBusy(): boolean {
    return this.kind === "lock-busy";
  }
  /** A step ran out of time or its connection ended: the host may hold a change not yet confirmed. */
  isInterrupted(): boolean {
    return this.kind === "deadline" || this.kind === "lost";
  }
}
