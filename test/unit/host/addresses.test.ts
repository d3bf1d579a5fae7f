/** The host's own addresses from /proc (provider/host/addresses.ts), on transcripts of a real kernel's
 * /proc/net/fib_trie and /proc/net/if_inet6 (test/fixtures/addresses: two interfaces, three IPv4
 * addresses, a ULA on each, link-local addresses, a tentative one). */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ADDRESSES, FIB_LOCAL, parseAddresses } from "../../../provider/host/addresses";

const FIXTURES = join(__dirname, "../../fixtures/addresses");
const fibTrie = join(FIXTURES, "fib_trie.txt");
const ifInet6 = readFileSync(join(FIXTURES, "if_inet6.txt"), "utf8");

/** What the section prints, with the sed program run by `sed` (GNU, or busybox's applet). */
function printed(sed: string[]): string {
  const r = spawnSync(sed[0], [...sed.slice(1), "-n", FIB_LOCAL, fibTrie], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout + ifInet6;
}

describe("the host's addresses", () => {
  it.each([[["sed"]], [["busybox", "sed"]]])(
    "reads fib_trie's local addresses and if_inet6's global ones (%j)",
    (sed) => {
      expect(parseAddresses(printed(sed))).toEqual({
        4: ["198.18.0.2", "198.18.1.2", "198.18.1.9"],
        // fd00:18:0:1::2 is still tentative (flags 0xc0): it takes no packets yet
        6: ["fd00:18::2"],
      });
    },
  );

  it("leaves loopback, link-local, broadcast, network and failed addresses out, and lines that are not addresses", () => {
    const text = [
      "           |-- 127.0.0.1",
      "  +-- 198.18.0.0/23 3 0 4",
      "           |-- 999.1.1.1",
      "           |-- 198.18.7.2 junk",
      "fe800000000000008c859efffe9c2066 02 40 20 80       p0",
      "00000000000000000000000000000001 01 80 10 80       lo",
      "20010db8000000000000000000000001 03 40 00 88     eth0",
      "20010db8000000000000000000000007 03 40 00 a0     eth0",
      "20010db80000000000000000000000zz 03 40 00 80     eth0",
    ].join("\n");
    expect(parseAddresses(text)).toEqual({ 6: ["2001:db8::7"] });
    expect(parseAddresses("")).toEqual({});
  });

  it("is constant script text that only reads /proc", () => {
    expect(ADDRESSES).toContain("/proc/net/fib_trie");
    expect(ADDRESSES).toContain("cat /proc/net/if_inet6");
    for (const shell of ["dash", "bash", "busybox"]) {
      const argv = shell === "busybox" ? ["busybox", "sh"] : [shell];
      const script = `sed -n '${FIB_LOCAL}' ${fibTrie}`;
      const r = spawnSync(argv[0], [...argv.slice(1), "-c", script], { encoding: "utf8" });
      expect(r.status, `${shell}: ${r.stderr}`).toBe(0);
      expect(parseAddresses(r.stdout)[4], shell).toEqual(["198.18.0.2", "198.18.1.2", "198.18.1.9"]);
    }
  });
});
