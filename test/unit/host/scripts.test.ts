// The remote scripts are POSIX sh that busybox ash and dash both parse (`sh -n`: nothing runs), and
// use none of the GNU-only options busybox rejects; the save checks each family's own file.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DETECT, OWNER, saveScript, unsaveScript } from "../../../provider/host/persist";
import type { Persistence } from "../../../provider/host/persist";
import { besideListing } from "../../../provider/host/beside";
import { armStep, confirmStep, REAP } from "../../../provider/host/commit";
import { limitsFor, lock, preamble, section, takeLock } from "../../../provider/host/protocol";

const limits = limitsFor(10, 30);
const PREAMBLE = preamble(limits);

const debian: Persistence = {
  mechanism: "netfilter-persistent",
  files: ["/etc/iptables/rules.v4", "/etc/iptables/rules.v6"],
};
const alpine: Persistence = {
  mechanism: "iptables-save",
  files: ["/etc/iptables/rules-save", "/etc/iptables/rules6-save"],
};
const TAG = "pulumi-iptables:p/s/app/0123456789ab";
const save = (p: Persistence) =>
  saveScript(p, {
    transient: ["pulumi-iptables:p/s/t/1"],
    persistent: [TAG],
    save: true,
    present: [
      { tag: TAG, families: [4, 6] },
      { tag: `${TAG}-6`, families: [6] },
    ],
    absent: ["pulumi-iptables:p/s/gone/2"],
  });

const SCRIPTS: Record<string, string> = {
  preamble: PREAMBLE,
  lock: lock(limits),
  "lock (the watchdog's, no time limit)": takeLock(),
  arm: armStep(
    "0123456789ab",
    "filter",
    { 4: ["-D INPUT -p tcp -j ACCEPT"], 6: ["-D INPUT -p tcp -j ACCEPT"] },
    limits,
  ),
  confirm: confirmStep("0123456789ab"),
  reap: REAP,
  detect: DETECT,
  owner: OWNER,
  "save (netfilter-persistent)": save(debian),
  "save (iptables-save)": save(alpine),
  "save (an adoption kept as the hand-made rule, the file read back)": saveScript(
    debian,
    {
      transient: [TAG],
      persistent: [],
      handMade: [
        {
          rule: `-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "${TAG}" -j ACCEPT`,
          handMade: "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
        },
      ],
      save: true,
      present: [],
      absent: [TAG],
    },
    4,
  ),
  unsave: unsaveScript(debian),
  section: section("x", ["iptables", "-S"], "input\n"),
  beside: besideListing([4, 6]),
};

// The shells the remote side may be: Debian's dash and busybox ash (from busybox-static).
const SHELLS = [
  ["dash", "/bin/dash", []],
  ["busybox ash", "/bin/busybox", ["sh"]],
] as const;

describe.each(SHELLS)("remote scripts parse in %s", (_name, bin, pre) => {
  it.each(Object.keys(SCRIPTS))("%s", (name) => {
    expect(existsSync(bin), `${bin} is missing: run bash .ci/setup.sh`).toBe(true);
    // -n: read and parse only; a syntax error throws with the shell's message.
    execFileSync(bin, [...pre, "-n", "-c", SCRIPTS[name]], { encoding: "utf8" });
  });
});

describe("remote scripts use only what busybox has", () => {
  it.each(Object.keys(SCRIPTS))("%s: no GNU-only options", (name) => {
    const text = SCRIPTS[name];
    for (const gnu of [
      /--reference/,
      /mktemp --suffix/,
      /stat --format/,
      /--preserve=/,
      /printf %q/,
      /grep -\w*P/,
      /\bip -j\b/,
      /--fixed-strings/,
    ])
      expect(text, String(gnu)).not.toMatch(gnu);
    expect(text).not.toMatch(/set -o pipefail/);
  });
});

describe("the save's checks", () => {
  it("require each family's file to hold that family's rule", () => {
    const text = save(debian);
    expect(text).toContain(
      `grep -qF ${TAG} /etc/iptables/rules.v4 2>/dev/null || { echo "/etc/iptables/rules.v4 does not hold the iptables rule`,
    );
    expect(text).toContain(
      `grep -qF ${TAG} /etc/iptables/rules.v6 2>/dev/null || { echo "/etc/iptables/rules.v6 does not hold the ip6tables rule`,
    );
    // An IPv6-only rule is checked in the IPv6 file only.
    expect(text).toContain(`grep -qF ${TAG}-6 /etc/iptables/rules.v6 `);
    expect(text).not.toContain(`grep -qF ${TAG}-6 /etc/iptables/rules.v4 `);
  });

  it("keep only live tags in the transient list, and write Alpine's files with iptables-save", () => {
    const text = save(alpine);
    expect(text).toMatch(/grep -qF -- "\$t" "\$live"/);
    expect(text).toContain(
      "write /etc/iptables/rules-save iptables-save && write /etc/iptables/rules6-save ip6tables-save",
    );
  });
});

describe("a section never ends the conversation's shell", () => {
  it("the listing beside iptables goes on where nft and iptables are missing (busybox ash)", () => {
    // Only busybox applets on PATH: no nft, no iptables (nothing privileged can run).
    const bin = mkdtempSync(join(tmpdir(), "pit-sh-"));
    try {
      for (const a of ["mktemp", "cat", "rm", "grep"]) symlinkSync("/bin/busybox", join(bin, a));
      const out = execFileSync("/bin/busybox", ["sh", "-c", `${PREAMBLE}${besideListing([4, 6])}\necho still-here`], {
        encoding: "utf8",
        env: { PATH: bin },
      });
      expect(out.trim().split("\n").pop()).toBe("still-here");
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
