// The foundation: the real pulumi CLI, the Node.js language host and the dynamic-provider host
// work here, with a trivial dynamic resource and a local file backend.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PulumiProject } from "../pulumi";

const program = `
const pulumi = require("@pulumi/pulumi");
const provider = {
  async create(inputs) { return { id: "echo-" + inputs.text, outs: { ...inputs, reads: 0 } }; },
  async read(id, props) { return { id, props: { ...props, reads: props.reads + 1 } }; },
  async diff(id, olds, news) { return { changes: olds.text !== news.text, replaces: olds.text !== news.text ? ["text"] : [] }; },
  async delete() {},
};
class Echo extends pulumi.dynamic.Resource {
  constructor(name, args, opts) { super(provider, name, { text: args.text, reads: undefined }, opts); }
}
const text = new pulumi.Config().require("text");
const e = new Echo("e1", { text });
exports.id = e.id;
exports.reads = e.reads;
`;

describe("real pulumi CLI with a trivial dynamic resource", () => {
  let p: PulumiProject;
  beforeAll(async () => {
    p = await PulumiProject.create("smoke", { files: { "index.js": program }, config: { "smoke:text": "hello" } });
  });
  afterAll(() => p?.remove());

  it("preview, up, refresh, a replacing update and destroy", async () => {
    const version = await p.must(["version"]);
    expect(version.stdout.trim()).toBe("v3.248.0");

    const preview = await p.preview();
    expect(preview.code, preview.stdout + preview.stderr).toBe(0);
    expect(preview.stdout).toMatch(/\+ pulumi-nodejs:dynamic:Resource: \(create\)\s+\[urn=\S+::e1\]/);
    expect(await p.resources()).toHaveLength(0);

    const up = await p.up();
    expect(up.code, up.stdout + up.stderr).toBe(0);
    expect(await p.outputs()).toMatchObject({ id: "echo-hello", reads: 0 });

    const refresh = await p.refresh();
    expect(refresh.code, refresh.stdout + refresh.stderr).toBe(0);
    expect((await p.resources())[0].outputs.reads).toBe(1);

    await p.must(["config", "set", "smoke:text", "world"]);
    const replace = await p.preview();
    expect(replace.stdout).toMatch(/\+-pulumi-nodejs:dynamic:Resource: \(replace\)/);
    expect((await p.up()).code).toBe(0);
    expect((await p.outputs()).id).toBe("echo-world");

    const destroy = await p.destroy();
    expect(destroy.code, destroy.stdout + destroy.stderr).toBe(0);
    expect(await p.resources()).toHaveLength(0);
  });
});
