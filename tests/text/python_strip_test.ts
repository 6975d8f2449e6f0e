import assert from "node:assert/strict";
import { ChatTemplate } from "../../lib/text/chat_template.ts";

const render = (source: string, variables: Record<string, unknown> = {}) =>
  new ChatTemplate(source).render([], { variables });

Deno.test("strip/lstrip/rstrip with an argument remove only those characters, as in Python", () => {
  const s = { s: "\n  text \n\n" };
  assert.equal(render("[{{ s.lstrip('\\n') }}]", s), "[  text \n\n]");
  assert.equal(render("[{{ s.rstrip('\\n') }}]", s), "[\n  text ]");
  assert.equal(render("[{{ s.strip('\\n') }}]", s), "[  text ]");
  assert.equal(render("[{{ 'xxaxyx'.strip('xy') }}]"), "[a]");
});

Deno.test("without an argument (or with None) they remove Python's whitespace", () => {
  assert.equal(render("[{{ s.strip() }}|{{ s.lstrip(none) }}]", { s: "\t\u3000 a \x1f" }), "[a|a \x1f]");
  // U+FEFF is whitespace to JavaScript's trim, not to Python.
  assert.equal(render("[{{ s.strip() }}]", { s: "\ufeffa" }), "[\ufeffa]");
});

Deno.test("calls nested in expressions and chains are rewritten too", () => {
  assert.equal(render("{{ s.split('</think>')[-1].lstrip('\\n') }}", { s: "a</think>\n\n b" }), " b");
  assert.equal(render("{{ s.strip('\\n').strip(' ') }}", { s: "\n x \n" }), "x");
});
