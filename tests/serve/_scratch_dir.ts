import { tinyChatModelDir } from "./_tiny_chat_model.ts";
const d = await tinyChatModelDir();
const dst = "/tmp/serve_scratch/tiny";
await Deno.mkdir(dst, { recursive: true });
for (const f of Deno.readDirSync(d)) Deno.copyFileSync(`${d}/${f.name}`, `${dst}/${f.name}`);
