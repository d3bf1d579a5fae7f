/**
 * What every schema of ./connection-schema and ./schema, and ./check, use: Pulumi's placeholder for
 * a value not known yet, a custom zod issue, a case-folding choice of names, a value shown in a message,
 * and the compile-time tie between a schema and its declared type.
 */
import { z } from "zod";

/** Pulumi's placeholder for a value not known yet (during preview). */
export const UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9";

/** True when the value is, or contains, Pulumi's unknown sentinel. */
export function isUnknown(v: unknown): boolean {
  if (v === UNKNOWN) return true;
  return typeof v === "object" && v !== null && Object.values(v).some(isUnknown);
}

/** @internal Adds a failure to a transform's context; what the transform returns then is never used. */
export const custom = (ctx: z.RefinementCtx, message: string, path: (string | number)[] = []) => {
  ctx.addIssue({ code: "custom", message, path });
  return z.NEVER;
};

/** @internal One of `values`, given in any case (upper-cased or lower-cased before the comparison). */
export function oneOf<T extends string>(values: readonly T[], upper: boolean) {
  const message = `must be one of ${values.join(", ")}`;
  return z.string({ error: message }).transform((s, ctx) => {
    const v = (upper ? s.toUpperCase() : s.toLowerCase()) as T;
    return values.includes(v) ? v : custom(ctx, message);
  });
}

/** A value as a message shows it: short strings quoted, long ones cut, objects by kind (never a secret). */
export function describe(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === "number" || typeof v === "boolean" || v === null || v === undefined) return String(v);
  return Array.isArray(v) ? "a list" : `a ${typeof v}`;
}

/**
 * `true` only when A and B have the same keys, optional ones included, and each is assignable to the
 * other: `const tie: SameKeysAndTypes<z.output<typeof schema>, Declared> = true` fails to compile when
 * a field is added to one side only (mutual assignability alone lets an optional field through).
 */
export type SameKeysAndTypes<A, B> = [keyof A] extends [keyof B]
  ? [keyof B] extends [keyof A]
    ? [A] extends [B]
      ? [B] extends [A]
        ? true
        : never
      : never
    : never
  : never;
