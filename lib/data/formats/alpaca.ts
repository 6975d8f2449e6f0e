/**
 * Alpaca records (`{"instruction", "input"?, "output", "system"?}`) as a one-turn chat: the user message is
 * the instruction, followed by the input after a blank line when there is one; the answer is `output`. They
 * go through the model's chat template like any chat, so an instruct model sees its own format rather than
 * the original Alpaca prompt ("Below is an instruction…"), which it was never tuned on.
 */
import type { ChatTurn } from "./openai.ts";

export function alpacaTurns(
  record: { instruction: string; input?: string; output: string; system?: string },
) {
  const user = record.input ? `${record.instruction}\n\n${record.input}` : record.instruction;
  const turns: ChatTurn[] = record.system ? [{ role: "system", content: record.system }] : [];
  turns.push({ role: "user", content: user }, { role: "assistant", content: record.output });
  return turns;
}
