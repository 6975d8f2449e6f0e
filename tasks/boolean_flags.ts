/**
 * One boolean style for every task: each on/off option exists as `--x` and `--no-x` (as `deno task
 * finetune` generates them), whichever of the two a task declares; the default stays the declared one.
 */
import { type Command, Option } from "commander";

/** Adds the missing half of every boolean flag pair of `command` and returns it. */
export function pairBooleans<C>(command: C): C {
  const cmd = command as unknown as Command;
  const longs = new Set(cmd.options.map((o: Option) => o.long));
  for (const option of [...cmd.options]) {
    // A flag without a value (commander calls a --no- flag "negate", not "boolean").
    if (option.required || option.optional || !option.long) continue;
    const name = option.long.replace(/^--(no-)?/, "");
    const twin = option.negate ? `--${name}` : `--no-${name}`;
    if (longs.has(twin)) continue;
    if (option.negate) {
      // Declared after its --no- twin, a positive flag would reset the default (true) to undefined.
      cmd.addOption(new Option(twin, `undo --no-${name}`).default(option.defaultValue ?? true));
    } else {
      cmd.option(twin, `undo --${name}`);
    }
    longs.add(twin);
  }
  return command;
}
