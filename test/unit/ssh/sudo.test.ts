// sudo (provider/ssh/sudo.ts): the command line sent, and which failures are sudo's own. Pure.
import { describe, expect, it } from "vitest";
import { REDACTED, SudoError } from "../../../provider/ssh";
import { shellCommand, sudoError } from "../../../provider/ssh/sudo";

const ctx = { target: "deploy@198.18.1.2:22", user: "deploy", secrets: ["hunter22"] };
const run = (stderr: string, code = 1) => ({ code, stdout: "out hunter22", stderr });

describe("sudo", () => {
  it("sends sh -s, or sudo -n -- /bin/sh -s", () => {
    expect(shellCommand(false)).toBe("sh -s");
    expect(shellCommand(true)).toBe("sudo -n -- /bin/sh -s");
  });

  it("tells a sudo that wants a password from one that is not allowed and one that is not installed", () => {
    const asks = sudoError(ctx, "script hunter22", run("sudo: a password is required\n"));
    expect(asks).toBeInstanceOf(SudoError);
    expect(asks!.message).toMatch(/^sudo on deploy@198\.18\.1\.2:22 asks for a password: deploy needs passwordless/);
    expect(asks!.command).toBe(`script ${REDACTED}`);
    expect(asks!.stdout).toBe(`out ${REDACTED}`);
    expect(asks!.code).toBe(1);
    expect(sudoError(ctx, "s", run("sudo: a terminal is required to read the password"))!.message).toMatch(
      /asks for a password/,
    );
    expect(
      sudoError(ctx, "s", run("deploy is not in the sudoers file.  This incident will be reported."))!.message,
    ).toMatch(/^deploy may not run \/bin\/sh as root through sudo on deploy@/);
    expect(sudoError(ctx, "s", run("sh: 1: sudo: not found", 127))!.message).toMatch(
      /^sudo is not installed on deploy@/,
    );
  });

  it("leaves every other failure to the command", () => {
    expect(sudoError(ctx, "s", run("iptables: No chain/target/match by that name."))).toBeUndefined();
    // "not found" is sudo's only with status 127.
    expect(sudoError(ctx, "s", run("sudo: not found", 1))).toBeUndefined();
  });
});
