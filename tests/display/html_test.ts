import assert from "node:assert/strict";
import { escapeHtml, htmlTable, textTable, trusted } from "../../lib/display/html.ts";

const SCRIPT = `<script>alert("x & 'y'")</script>`;

Deno.test("escapeHtml leaves no tag, quote or bare ampersand", () => {
  const out = escapeHtml(SCRIPT);
  assert.equal(out, "&lt;script&gt;alert(&quot;x &amp; &#39;y&#39;&quot;)&lt;/script&gt;");
  assert.doesNotMatch(out, /[<>"']/);
});

Deno.test("htmlTable escapes text cells and inserts trusted ones as they are", () => {
  const html = htmlTable(["a", SCRIPT], [[SCRIPT, trusted("<b>bold</b>"), 3]], {
    caption: SCRIPT,
    numeric: [2],
  });
  assert.equal(html.match(/<script>/g), null);
  assert.equal(html.match(/&lt;script&gt;/g)?.length, 3); // header, cell, caption
  assert.match(html, /<td[^>]*><b>bold<\/b><\/td>/);
  assert.match(html, /<td style="[^"]*text-align:right">3<\/td>/);
  assert.ok(html.startsWith("<table") && html.endsWith("</table>"));
});

Deno.test("textTable pads columns, right-aligns numbers and keeps one line per row", () => {
  const text = textTable(["name", "n"], [["alpha", "1"], ["b", "12345"], ["two\nlines", "7"]], {
    numeric: [1],
  });
  assert.deepEqual(text.split("\n"), [
    "name           n",
    "---------  -----",
    "alpha          1",
    "b          12345",
    "two↵lines      7",
  ]);
});
