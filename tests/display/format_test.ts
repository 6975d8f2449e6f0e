import assert from "node:assert/strict";
import { formatCount, formatInt, formatLoss, formatPercent } from "../../lib/display/format.ts";

Deno.test("formatCount: three significant digits with k / M / B, whole numbers below a thousand", () => {
  assert.equal(formatCount(134_515_008), "134.5 M");
  assert.equal(formatCount(4_884_480), "4.88 M");
  assert.equal(formatCount(1_000), "1.00 k");
  assert.equal(formatCount(7.2e9), "7.20 B");
  assert.equal(formatCount(912), "912");
});

Deno.test("formatInt, formatLoss and formatPercent", () => {
  assert.equal(formatInt(1234567.4), "1,234,567");
  assert.equal(formatLoss(0.123456), "0.1235");
  assert.equal(formatLoss(NaN), "—");
  assert.equal(formatLoss(undefined), "—");
  assert.equal(formatPercent(0.0363), "3.63 %");
  assert.equal(formatPercent(0.5), "50.0 %");
});
