/** Loads the transcripts captured by scripts/capture-fixtures.ts. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SCENARIOS, type Family, type Scenario } from "../fixtures/scenarios";

export const ROOT = join(__dirname, "..", "fixtures");
export const BACKENDS = ["nf_tables", "legacy"] as const;
export const FAMILIES: Family[] = [4, 6];

export interface Capture {
  backend: (typeof BACKENDS)[number];
  family: Family;
  scenario: Scenario;
  /** save.txt, save-c.txt, S.txt, S-v.txt, L.txt, rules.txt */
  read(file: string): string;
}

export const CAPTURES: Capture[] = BACKENDS.flatMap((backend) =>
  FAMILIES.flatMap((family) =>
    SCENARIOS.filter((s) => !s.only || s.only === family).map((scenario) => ({
      backend,
      family,
      scenario,
      read: (file: string) => readFileSync(join(ROOT, backend, `ipv${family}`, scenario.name, file), "utf8"),
    })),
  ),
);

export const label = (c: Capture) => `${c.backend} ipv${c.family} ${c.scenario.name}`;

export function readFamilyFile(backend: string, family: Family, file: string): string {
  return readFileSync(join(ROOT, backend, `ipv${family}`, file), "utf8");
}
