// What a program pays to register a PortRule: the SDK writes a stack trace onto each promise it makes
// per property (for its promise-leak report), and the language host's source-map support maps each
// frame. PortRule registers with the stacks off, unless the user debugs promise leaks.
import { createRequire } from "node:module";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
// The built package (npm test builds first): provider/index.ts loads ./provider with a CommonJS require,
// as the serialized provider needs, which the test runner does not resolve to TypeScript source.
import { PortRule } from "../../../dist/index";

/** How many stack traces with frames V8 formats while `fn` runs (Error.prepareStackTrace counts them). */
function stacksFormatted(fn: () => void): number {
  const before = Error.prepareStackTrace;
  let stacks = 0;
  Error.prepareStackTrace = (error, sites) => {
    if (sites.length) stacks++;
    return before ? before(error, sites) : `${error}`;
  };
  try {
    fn();
  } finally {
    Error.prepareStackTrace = before;
  }
  return stacks;
}

const register = (name: string) =>
  new PortRule(name, { connection: { host: "198.18.0.1", user: "root", password: "x" }, port: 8080, action: "ACCEPT" });

// The SDK's closure serializer, which the dynamic resource calls for its provider (a property of this
// module object, read at each call): it serializes the provider as `require("pulumi-iptables/...")` only
// where the package is installed under node_modules, which this checkout is not.
const closure = createRequire(__filename)("@pulumi/pulumi/runtime/closure/serializeClosure");
const serialize = closure.serializeFunction;

describe("registering a PortRule", () => {
  beforeAll(() => {
    closure.serializeFunction = async () => ({ text: "exports.handler = () => ({});", containsSecrets: false });
    return pulumi.runtime.setMocks({
      newResource: (args) => ({ id: `${args.name}-id`, state: args.inputs }),
      call: (args) => args.inputs,
    });
  });
  afterAll(() => {
    closure.serializeFunction = serialize;
  });
  afterEach(() => {
    delete process.env.PULUMI_DEBUG_PROMISE_LEAKS;
  });

  it("formats one stack trace (the resource's source position, which the engine shows), none for the SDK's promises", () => {
    const limit = Error.stackTraceLimit;
    expect(stacksFormatted(() => register("quiet"))).toBe(1);
    expect(Error.stackTraceLimit).toBe(limit);
  });

  it("keeps them where the user debugs promise leaks (PULUMI_DEBUG_PROMISE_LEAKS)", () => {
    process.env.PULUMI_DEBUG_PROMISE_LEAKS = "1";
    expect(stacksFormatted(() => register("debugged"))).toBeGreaterThan(50);
  });

  it("leaves Error.stackTraceLimit as it was when registering throws", () => {
    const limit = Error.stackTraceLimit;
    expect(() => new PortRule("bad", undefined as never)).toThrow();
    expect(Error.stackTraceLimit).toBe(limit);
  });
});
