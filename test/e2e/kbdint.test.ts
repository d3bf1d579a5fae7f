// Issue 20, item 6: keyboard-interactive gives the password to a password prompt only. A lab host's real
// OpenSSH sshd authenticates through PAM only (PasswordAuthentication no; the PAM service file exists only
// in the host's private /etc): pit-nopw with pam_oath (Debian's libpam-oath), which asks "One-time
// password (OATH) for `pit-nopw':", everyone else with pam_unix, which asks "Password: ".
// - The password given for pit-nopw is exactly the answer pam_oath accepts at that moment (its PIN and the
//   HOTP value of RFC 4226's test key at counter 0), so a provider that sent it to this prompt would log
//   in: under the real CLI, up fails naming the prompt it declined, and the host is unchanged. An ssh2
//   client that does answer the prompt with that password then logs in: the prompt would have taken it.
// - pit-ops' password goes to pam_unix's "Password: ": up and destroy work.
import { Client } from "ssh2";
import { describe, expect, it } from "vitest";
import { LAB_PASSWORD } from "../lab/lab";
import type { LabHost, LabUser } from "../lab/lab";
import { all, EMPTY, ok, rulesets, useLab } from "./harness";
import { programProjectVia } from "./program";

/** RFC 4226's test key ("12345678901234567890") and its HOTP value at counter 0 (appendix D). */
const SECRET = "3132333435363738393031323334353637383930";
const CODE_AT_0 = "755224";
const PIN = "lab-pin";
/** What pam_oath accepts for pit-nopw until a code is used: the PIN, then the code. */
const PASSWORD = `${PIN}${CODE_AT_0}`;

const PAM_SSHD = [
  "auth [success=1 default=ignore] pam_succeed_if.so quiet user = pit-nopw",
  "auth [success=done default=die] pam_unix.so",
  "auth required pam_oath.so usersfile=/etc/users.oath window=1 digits=6",
  "account required pam_permit.so",
  "session required pam_permit.so",
  "password required pam_deny.so",
  "",
].join("\n");

let h: LabHost;
/** A lab user's connection with no key: only keyboard-interactive can log it in. */
const withoutKey = (user: LabUser) => {
  const { privateKey: _, ...rest } = h.connection(user);
  return rest;
};
useLab(async (lab) => {
  h = await lab.addHost({
    rules: { v4: EMPTY, v6: EMPTY },
    sshd: { UsePAM: "yes", KbdInteractiveAuthentication: "yes", PasswordAuthentication: "no" },
    etc: { "pam.d/sshd": PAM_SSHD, "users.oath": `HOTP pit-nopw ${PIN} ${SECRET}\n` },
  });
});

/** Logs in as pit-nopw answering every keyboard-interactive prompt with `answer`; resolves with the
 * prompts seen and whether the login succeeded. */
function loginAnswering(answer: string): Promise<{ prompts: string[]; ok: boolean }> {
  const prompts: string[] = [];
  return new Promise((resolve) => {
    const c = new Client();
    c.on("keyboard-interactive", (_n, _i, _l, asked, finish) => {
      prompts.push(...asked.map((p) => p.prompt));
      finish(asked.map(() => answer));
    });
    c.on("ready", () => {
      c.end();
      resolve({ prompts, ok: true });
    });
    c.on("error", () => resolve({ prompts, ok: false }));
    c.connect({ host: h.v4, port: 22, username: "pit-nopw", tryKeyboard: true, readyTimeout: 15_000 });
  });
}

describe("issue 20.6: keyboard-interactive", () => {
  it("a one-time-password prompt does not get the password: up fails naming it, the host is unchanged", async () => {
    const p = await programProjectVia("kbdint-otp", { ...withoutKey("nopasswd"), password: PASSWORD, sudo: true }, [
      { name: "r", args: { port: 8081, action: "DROP", ipVersion: "both" } },
    ]);
    const before = await rulesets(h);
    const up = await p.up();
    expect(up.code, all(up)).not.toBe(0);
    expect(all(up)).toMatch(/authentication as pit-nopw@\S+ failed \(tried: [^)]*keyboard-interactive/);
    expect(all(up)).toContain(
      'keyboard-interactive asked "One-time password (OATH) for `pit-nopw\':", which is not a password prompt, so it was not answered',
    );
    expect(all(up)).not.toContain(PASSWORD);
    expect(await rulesets(h)).toEqual(before);
    expect(await p.resources()).toHaveLength(0);

    // The control: the same password, given to that prompt, logs in (so the provider above did not give it).
    expect(await loginAnswering(PASSWORD)).toEqual({
      prompts: ["One-time password (OATH) for `pit-nopw': "],
      ok: true,
    });
  }, 600_000);

  it("a password prompt gets the password: up and destroy work", async () => {
    const p = await programProjectVia("kbdint-pw", { ...withoutKey("sudo"), password: LAB_PASSWORD, sudo: true }, [
      { name: "r", args: { port: 8082, action: "DROP", ipVersion: "both" } },
    ]);
    const before = await rulesets(h);
    await ok(p.up());
    const { rules } = (await p.outputs()).rules.r;
    expect((await h.iptables(4, ["-S", "INPUT"])).stdout.split("\n")).toContain(rules.ipv4);
    await ok(p.destroy());
    expect(await rulesets(h)).toEqual(before);
  }, 600_000);
});
