/**
 * Writes the date-normalisation dataset: `train.jsonl` and `valid.jsonl` beside this file.
 *
 *   deno run -A data/dates/make_dataset.ts
 *
 * Each record is a chat: a fixed system prompt, a user message holding one date in one of many human
 * spellings (sometimes inside a sentence), and the answer: that date in ISO 8601, `YYYY-MM-DD`. The output
 * depends only on SEED, so rerunning reproduces the committed files byte for byte. Validation dates never
 * occur in the training set.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Rng } from "../../lib/random.ts";

const SEED = 20240305;
const TRAIN = 400;
const VALID = 60;

export const SYSTEM_PROMPT = "Convert the date in the user's message to ISO 8601 (YYYY-MM-DD). " +
  "Two-digit years are 20YY. Reply with the date only.";

const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];
const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const UNITS = [
  "",
  "first",
  "second",
  "third",
  "fourth",
  "fifth",
  "sixth",
  "seventh",
  "eighth",
  "ninth",
  "tenth",
  "eleventh",
  "twelfth",
  "thirteenth",
  "fourteenth",
  "fifteenth",
  "sixteenth",
  "seventeenth",
  "eighteenth",
  "nineteenth",
];

interface Day {
  year: number;
  month: number; // 1..12
  day: number; // 1..31
}

const pad2 = (n: number) => String(n).padStart(2, "0");
const iso = (d: Day) => `${d.year}-${pad2(d.month)}-${pad2(d.day)}`;
const monthName = (d: Day) => MONTHS[d.month - 1];
const shortMonth = (d: Day) => monthName(d).slice(0, 3);
const yy = (d: Day) => pad2(d.year % 100);

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ["th", "st", "nd", "rd"][n % 10] ?? "th";
  return `${n}${suffix}`;
}

function ordinalWords(n: number): string {
  if (n < 20) return UNITS[n];
  if (n === 20) return "twentieth";
  if (n === 30) return "thirtieth";
  return `${n < 30 ? "twenty" : "thirty"}-${UNITS[n % 10]}`;
}

function weekday(d: Day): string {
  return WEEKDAYS[new Date(Date.UTC(d.year, d.month - 1, d.day)).getUTCDay()];
}

/** The spellings; `shortYear` ones only get dates in 2000–2029 (see the system prompt). */
const SPELLINGS: { shortYear?: boolean; write: (d: Day) => string }[] = [
  { write: (d) => `${monthName(d)} ${ordinal(d.day)}, ${d.year}` },
  { write: (d) => `${d.day} ${monthName(d)} ${d.year}` },
  { write: (d) => `${shortMonth(d)} ${d.day}, ${d.year}` },
  { write: (d) => `${d.year}, ${shortMonth(d)} ${pad2(d.day)}` },
  { write: (d) => `the ${ordinalWords(d.day)} of ${monthName(d)} ${d.year}` },
  { write: (d) => `${d.day}-${shortMonth(d)}-${d.year}` },
  { write: (d) => `${weekday(d)}, ${monthName(d)} ${d.day}, ${d.year}` },
  { write: (d) => `${weekday(d)} ${ordinal(d.day)} ${monthName(d)} ${d.year}` },
  { write: (d) => `${pad2(d.day)}/${pad2(d.month)}/${d.year} (day first)` },
  { write: (d) => `${pad2(d.month)}/${pad2(d.day)}/${d.year} (month first)` },
  { write: (d) => `${d.day}.${d.month}.${d.year}` },
  { write: (d) => `${d.year}/${pad2(d.month)}/${pad2(d.day)}` },
  { write: (d) => `${d.year}${pad2(d.month)}${pad2(d.day)}` },
  { write: (d) => `${monthName(d).toUpperCase()} ${d.day} ${d.year}` },
  { write: (d) => `${ordinal(d.day)} of ${monthName(d)}, ${d.year}` },
  { shortYear: true, write: (d) => `${d.day}/${d.month}/${yy(d)} (day first)` },
  { shortYear: true, write: (d) => `${d.month}/${d.day}/${yy(d)} (month first)` },
  { shortYear: true, write: (d) => `${ordinal(d.day)} ${shortMonth(d)} '${yy(d)}` },
];

/** Sentences the date may sit in (half the messages are the bare date). */
const SENTENCES = [
  (s: string) => `The invoice is dated ${s}.`,
  (s: string) => `We met on ${s}.`,
  (s: string) => `Please book the room for ${s}.`,
  (s: string) => `Her birthday: ${s}`,
  (s: string) => `Deadline ${s}, no extensions.`,
  (s: string) => `What is ${s} in ISO format?`,
  (s: string) => `Shipment expected ${s}`,
  (s: string) => `Normalize: ${s}`,
];

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function randomDay(rng: Rng, shortYear: boolean): Day {
  const pick = (n: number) => Math.floor(rng.next() * n);
  const year = shortYear ? 2000 + pick(30) : 1900 + pick(200);
  const month = 1 + pick(12);
  return { year, month, day: 1 + pick(daysIn(year, month)) };
}

interface Sample {
  user: string;
  answer: string;
}

function makeSamples(rng: Rng, count: number, taken: Set<string>): Sample[] {
  const pick = (n: number) => Math.floor(rng.next() * n);
  const out: Sample[] = [];
  while (out.length < count) {
    const spelling = SPELLINGS[pick(SPELLINGS.length)];
    const day = randomDay(rng, spelling.shortYear ?? false);
    const answer = iso(day);
    if (taken.has(answer)) continue;
    taken.add(answer);
    const text = spelling.write(day);
    const user = rng.next() < 0.5 ? text : SENTENCES[pick(SENTENCES.length)](text);
    out.push({ user, answer });
  }
  return out;
}

function toJsonl(samples: readonly Sample[]): string {
  return samples.map(({ user, answer }) =>
    JSON.stringify({
      messages: [
        { role: "system", content: SYSTEM_PROMPT },
        { role: "user", content: user },
        { role: "assistant", content: answer },
      ],
    }) + "\n"
  ).join("");
}

/** The two files' contents (a test checks the committed files against them). */
export function makeDateDataset(): { train: string; valid: string } {
  const rng = new Rng(SEED);
  const taken = new Set<string>();
  // Validation first, so changing TRAIN never changes the validation set.
  const valid = makeSamples(rng, VALID, taken);
  const train = makeSamples(rng, TRAIN, taken);
  return { train: toJsonl(train), valid: toJsonl(valid) };
}

if (import.meta.main) {
  const { train, valid } = makeDateDataset();
  const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));
  writeFileSync(here("train.jsonl"), train);
  writeFileSync(here("valid.jsonl"), valid);
  console.log(`wrote ${TRAIN} training and ${VALID} validation records`);
}
