// Messages on the resource. @pulumi/pulumi's dynamic-provider host gets the engine's address as its
// argument but does not tell its log: pulumi.log there finds no engine (PULUMI_NODEJS_ENGINE unset)
// and prints to stderr, which the engine shows on the Stack, "[runtime]" first, whatever resource it
// names. Told the address, pulumi.log sends each message to the engine, on the resource it names.

/** The script that runs a dynamic provider's process. */
const HOST = /[\\/]cmd[\\/]dynamic-provider[\\/]index\.js$/;

/** In a dynamic provider's process, gives pulumi.log the engine's address; elsewhere does nothing.
 * Call before the first log: @pulumi/pulumi reads its settings once. */
export function logToEngine(): void {
  const engine = process.argv[2];
  if (HOST.test(process.argv[1] ?? "") && engine && !process.env.PULUMI_NODEJS_ENGINE)
    process.env.PULUMI_NODEJS_ENGINE = engine;
}
