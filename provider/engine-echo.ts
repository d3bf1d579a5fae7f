// One message per failure. @pulumi/pulumi's dynamic-provider host sends an error that read or delete
// (also check, diff) throws to the engine, which shows its message on the resource, and also prints it
// to its stderr as `${e}: ${e.stack}`, which the engine shows again on the Stack: the message twice and
// a JavaScript stack trace. This drops exactly that echo, of errors the lifecycle itself threw.

/** The echo texts (`${e}: ${e.stack}`) of errors thrown to the engine, not printed yet. */
const echoes = new Set<string>();
/** Create and update errors are not echoed: their texts are forgotten beyond this many. */
const KEEP = 64;
let installed = false;

/** console.error as the dynamic-provider host calls it, without the echoes. */
function install(): void {
  installed = true;
  const print = console.error.bind(console);
  console.error = (...args: unknown[]) => {
    if (args.length === 1 && typeof args[0] === "string" && echoes.delete(args[0])) return;
    print(...args);
  };
}

/** Runs a lifecycle verb; an error it throws reaches the engine unchanged, and is not echoed on stderr. */
export async function unechoed<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof Error) {
      if (!installed) install();
      if (echoes.size >= KEEP) echoes.clear();
      echoes.add(`${err}: ${err.stack}`);
    }
    throw err;
  }
}
