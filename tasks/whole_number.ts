/** Parses a whole-number CLI option of a task, or exits with status 2 and a message naming the flag. */
export function wholeNumber(task: string, flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`${task}: ${flag} must be a whole number ≥ 0, got "${value}"`);
    Deno.exit(2);
  }
  return n;
}
