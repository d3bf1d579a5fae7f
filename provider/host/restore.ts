// iptables-restore, the one command that changes a host's ruleset: its command line, its input, and
// the framed section that runs it (pure text).
import { iptables, section } from "./protocol";
import type { Family, Limits } from "./protocol";

/** `iptables-restore --noflush -w WAIT` of a family: only the lines given change, atomically. */
export const restoreCommand = (f: Family, limits: Limits) => [
  `${iptables(f)}-restore`,
  "--noflush",
  "-w",
  String(limits.lockWait),
];

/** iptables-restore input of `lines` in `table`. */
export const restoreInput = (table: string, lines: string[]) => `*${table}\n${lines.join("\n")}\nCOMMIT\n`;

/** The section `restore<family>` that restores `lines` in `table`. */
export const restoreStep = (f: Family, table: string, lines: string[], limits: Limits) =>
  section(`restore${f}`, restoreCommand(f, limits), restoreInput(table, lines));
