// Root filesystems of other userlands for lab hosts and the rules lab: the cached tarballs that
// scripts/rootfs.sh builds (once per machine, from .ci/setup.sh), unpacked once per lab run into the
// run's directory and shared read-only by every host of the run (each host mounts an overlay on it).
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

/** Debian suites (debootstrap minbase) and the busybox + dropbear host. */
export type Userland = "bullseye" | "bookworm" | "trixie" | "sid" | "embedded";

const ROOT = resolve(__dirname, "../..");

/** The tarball of a suite: cached, or (embedded only: it needs no network) built now. Debian suites
 * download their packages, which a lab run cannot (it runs inside a network namespace of its own). */
function tarball(userland: Userland): string {
  const args = [join(ROOT, "scripts/rootfs.sh"), ...(userland === "embedded" ? [] : ["--cached"]), userland];
  const r = spawnSync("bash", args, { encoding: "utf8" });
  if (r.status !== 0)
    throw new Error(
      `the ${userland} root filesystem is not available (scripts/rootfs.sh exited ${r.status}): ${r.stderr.trim()}`,
    );
  return r.stdout.trim().split("\n").pop()!;
}

const unpacked = new Map<Userland, string>();

/** The unpacked root filesystem of a userland (read-only use: an overlay's lower layer). */
export function rootfs(userland: Userland): string {
  const known = unpacked.get(userland);
  if (known) return known;
  const base = process.env.PIT_LAB_DIR;
  if (!base)
    throw new Error("root filesystems are unpacked into the lab run's directory: run inside test/lab/in-lab.sh");
  const dir = join(base, "rootfs", userland);
  if (!existsSync(join(dir, "bin"))) {
    const src = tarball(userland);
    mkdirSync(join(base, "rootfs"), { recursive: true });
    // Several vitest workers may unpack at once: each into its own directory, the first rename wins.
    const tmp = mkdtempSync(join(base, "rootfs", `.${userland}-`));
    const x = spawnSync("sh", ["-c", 'zstd -dc "$1" | tar -x --numeric-owner -C "$2" -f -', "_", src, tmp], {
      encoding: "utf8",
    });
    if (x.status !== 0) throw new Error(`unpacking ${src} failed: ${x.stderr.trim()}`);
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  unpacked.set(userland, dir);
  return dir;
}
