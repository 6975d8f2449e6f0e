/**
 * Chat templates are Python Jinja: `content.lstrip('\n')` strips newlines only. @huggingface/jinja 0.5.11
 * ignores the argument of strip/lstrip/rstrip and trims all whitespace, which changes real renderings
 * (Qwen3's template strips "\n" around reasoning). We reroute those calls in the parsed template to
 * helpers with Python's exact semantics.
 */

/** What Python's `str.strip()` removes without an argument (the characters `str.isspace()` accepts). */
const PY_WHITESPACE = new Set(
  Array.from("\t\n\v\f\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000")
    .concat(Array.from({ length: 11 }, (_, i) => String.fromCharCode(0x2000 + i))),
);

function pyStrip(text: unknown, chars: unknown, left: boolean, right: boolean, name: string): string {
  if (typeof text !== "string") {
    throw new Error(`${name}() needs a string, got ${text === null ? "None" : typeof text}`);
  }
  const strip = chars == null ? PY_WHITESPACE : new Set(Array.from(String(chars)));
  const points = Array.from(text);
  let start = 0;
  let end = points.length;
  if (left) { while (start < end && strip.has(points[start])) start++; }
  if (right) { while (end > start && strip.has(points[end - 1])) end--; }
  return points.slice(start, end).join("");
}

const HELPER_FOR: Record<string, string> = {
  strip: "__py_strip",
  lstrip: "__py_lstrip",
  rstrip: "__py_rstrip",
};

/** Template variables the rerouted calls refer to. */
export const PYTHON_STRIP_HELPERS: Record<string, (text: unknown, chars?: unknown) => string> = {
  __py_strip: (text, chars) => pyStrip(text, chars, true, true, "strip"),
  __py_lstrip: (text, chars) => pyStrip(text, chars, true, false, "lstrip"),
  __py_rstrip: (text, chars) => pyStrip(text, chars, false, true, "rstrip"),
};

interface Node {
  type?: unknown;
  [field: string]: unknown;
}

/**
 * Rewrites, in place, every `x.strip(...)` / `x.lstrip(...)` / `x.rstrip(...)` call of a parsed template
 * (`new Template(text).parsed`) into `__py_strip(x, ...)` and the like. The interpreter dispatches on
 * each node's `type`, so plain objects stand in for the library's node classes.
 */
export function routePythonStrips(program: unknown): void {
  const seen = new Set<unknown>();
  const visit = (value: unknown) => {
    if (typeof value !== "object" || value === null || seen.has(value)) return;
    seen.add(value);
    if (Array.isArray(value)) {
      value.forEach(visit);
      return;
    }
    const node = value as Node;
    for (const child of Object.values(node)) visit(child);
    if (node.type !== "CallExpression") return;
    const callee = node.callee as Node | undefined;
    const property = callee?.property as Node | undefined;
    if (callee?.type !== "MemberExpression" || callee.computed || property?.type !== "Identifier") return;
    const helper = HELPER_FOR[String(property.value)];
    if (helper === undefined) return;
    node.callee = { type: "Identifier", value: helper };
    node.args = [callee.object, ...(node.args as unknown[])];
  };
  visit(program);
}
