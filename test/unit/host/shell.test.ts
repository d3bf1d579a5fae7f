import { describe, expect, it } from "vitest";
import { receiver } from "../../../provider/host/shell";

const chunked = (text: string, size: number) => {
  const b = Buffer.from(text);
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += size) out.push(b.subarray(i, i + size));
  return out;
};

/** A receiver fed `text` in chunks of `size` bytes, and what it gave back for `marker` (asked after every chunk). */
function fed(text: string, size: number, marker: string) {
  const r = receiver();
  let out: string | undefined;
  for (const c of chunked(text, size)) {
    r.add(c);
    out ??= r.take(marker);
  }
  return { r, out };
}

describe("receiver: a shell's output, assembled once", () => {
  it("finds a step's end marker at every split between chunks, and keeps what follows it", () => {
    const text = "line one\nline two\n@@pit-step-done 1\nnext";
    for (let size = 1; size <= text.length; size++) {
      const { r, out } = fed(text, size, "@@pit-step-done 1\n");
      expect(out).toBe("line one\nline two\n");
      expect(r.text()).toBe("next");
      r.add(Buffer.from(" step\n@@pit-step-done 2\n"));
      expect(r.take("@@pit-step-done 2\n")).toBe("next step\n");
      expect(r.text()).toBe("");
    }
  });

  it("decodes a character split between chunks whole", () => {
    const text = '-A INPUT -m comment --comment "café ✓" -j ACCEPT\n@@pit-step-done 1\n';
    for (let size = 1; size <= 8; size++) {
      const { out } = fed(text, size, "@@pit-step-done 1\n");
      expect(out).toBe('-A INPUT -m comment --comment "café ✓" -j ACCEPT\n');
    }
  });

  it("takes a listing of 13 MB received in 32 KiB chunks (the size of a Kubernetes node's)", () => {
    const line = "[0:0] -A KUBE-SERVICES -d 198.19.0.1/32 -p tcp -m tcp --dport 80 -j REJECT\n";
    const listing = line.repeat(Math.ceil(13e6 / line.length));
    const { out } = fed(`${listing}@@pit-step-done 7\n`, 32 * 1024, "@@pit-step-done 7\n");
    expect(out?.length).toBe(listing.length);
    expect(out === listing).toBe(true);
  });
});
