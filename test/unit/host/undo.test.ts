// The undo path (undo.ts) against a fake shell: a confirmation that cannot claim its transaction, an
// arm that fails, a confirmation that lost the claim to the rollback; each said as a listing shows it.
import { describe, expect, it } from "vitest";
import { agentOn, failure, first, guide, insert, text, withRule } from "./batches";
import { FakeHost } from "./fake";
import type { StepAnswer } from "./fake";

describe("a confirmation that cannot claim the transaction (a /run turned read-only)", () => {
  it("undoes the change in the shell that holds the lock, and says so as far as a listing shows it", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      { persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4) } },
      { confirm: { code: 1, err: "transaction x is no longer pending" } },
      { restore4: {}, save4: { out: guide(4) } },
    ]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.message).toBe(
      "confirming the change on root@198.18.0.10:22 failed: transaction x is no longer pending; it was undone, and a listing shows none of the change on the host",
    );
    expect(host.scripts[3]).toContain(`-D INPUT ${text(4).slice("-A INPUT ".length)}`);
  });
});

describe("issue 21.9: an arm that fails", () => {
  it("says the rollback could not be armed and that a listing shows nothing applied, not that iptables refused", async () => {
    const host = new FakeHost([
      first({ save4: guide(4) }),
      {
        persist: {},
        arm: { code: 1, err: "mkdir: cannot create directory: No space left on device" },
        save4: { out: guide(4) },
      },
    ]);
    const e = await failure(agentOn(host).change(insert()));
    expect(e.isRestoreRefused()).toBe(false);
    expect(e.message).toBe(
      "arming the rollback on root@198.18.0.10:22 failed: mkdir: cannot create directory: No space left on device, and a listing shows none of the change on the host",
    );
  });
});

describe("a change that may cut off new SSH connections", () => {
  const drop22 = { port: 22, action: "DROP", allowLockout: true };
  const applied = (): StepAnswer => ({ persist: {}, arm: {}, restore4: {}, save4: { out: withRule(4, 1, drop22) } });
  it("issue 21.3: a confirmation that lost the claim to the rollback says the change was reverted, never created", async () => {
    const lost = {
      code: 3,
      err: "its rollback claimed it first: the host reverted the change (or is reverting it), it was not confirmed",
    };
    const host = new FakeHost([first({ save4: guide(4) }), applied(), { confirm: lost }, { save4: { out: guide(4) } }]);
    const fresh = new FakeHost([], [{ fresh: {} }]);
    const e = await failure(agentOn(host, fresh).change(insert(drop22, { position: "top", freshConfirm: true })));
    expect(e.message).toMatch(
      /confirming the change on \S+ failed: its rollback claimed it first: the host reverted the change .*, and a listing shows none of the change on the host$/,
    );
    expect(e.message).not.toMatch(/may or may not be confirmed/);
  });
});
