// Running sh as root through sudo: the command line sent to sshd, and what sudo's refusals mean.
import { SudoError, redact } from "./errors";
import type { RunResult } from "./types";

/**
 * The command line sent to sshd, which runs it through the user's login shell (`<shell> -c <line>`): a fixed
 * one, plain words that bash, dash, zsh, fish and busybox ash all read the same, so that no login shell's
 * quoting rules come between a script and sh. Every script goes to this sh on its stdin.
 */
export const shellCommand = (sudo: boolean) => (sudo ? "sudo -n -- /bin/sh -s" : "sh -s");

/** Who ran what: the session's "user@host:port", its user, and the secrets kept out of the error. */
export interface SudoContext {
  target: string;
  user: string;
  secrets: readonly (string | undefined)[];
}

/** Why sudo itself refused to run sh, from its stderr; undefined when sudo is not to blame. */
function sudoRefusal(r: RunResult, who: string, user: string): string | undefined {
  if (/sudo: (a )?password is required|sudo: a terminal is required|sudo: no tty present/.test(r.stderr)) {
    return (
      `sudo on ${who} asks for a password: ${user} needs passwordless sudo for /bin/sh ` +
      `(e.g. "${user} ALL=(root) NOPASSWD: /bin/sh" in /etc/sudoers.d/), or connect as root`
    );
  }
  if (/is not in the sudoers file|is not allowed to execute|may not run sudo/.test(r.stderr)) {
    return (
      `${user} may not run /bin/sh as root through sudo on ${who}: it needs passwordless sudo for /bin/sh ` +
      `(e.g. "${user} ALL=(root) NOPASSWD: /bin/sh" in /etc/sudoers.d/), or connect as root`
    );
  }
  if (r.code === 127 && /sudo: (command )?not found|sudo: No such file/.test(r.stderr))
    return `sudo is not installed on ${who}: install it and give ${user} passwordless sudo for /bin/sh, or connect as root`;
  return undefined;
}

/** A SudoError when a command run through sudo failed because of sudo itself. */
export function sudoError(ctx: SudoContext, command: string, r: RunResult): SudoError | undefined {
  const message = sudoRefusal(r, ctx.target, ctx.user);
  if (message === undefined) return undefined;
  const { secrets } = ctx;
  return new SudoError(message, redact(command, secrets), r.code, redact(r.stdout, secrets), redact(r.stderr, secrets));
}
