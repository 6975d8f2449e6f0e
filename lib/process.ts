/** Subprocesses (pip, Jupyter, the notebook runner): output forwarded line by line and kept for error messages. */

export interface RunResult {
  ok: boolean;
  /** "exit code N" or "signal S". */
  status: string;
  /** stdout and stderr as they came. */
  output: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  /** Receives each non-empty output line; default: dropped (the output is still in the result). */
  log?: (line: string) => void;
}

/** Characters of a failed subprocess's output quoted in an error. */
const OUTPUT_TAIL = 3000;

/** Runs `command args`; throws NotFound as an Error naming `what` (e.g. "Python 3") when it is missing. */
export async function run(
  command: string,
  args: string[],
  what: string,
  options: RunOptions = {},
): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      env: options.env,
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Error(`cannot run ${command}: not found (${what})`);
    throw error;
  }
  let output = "";
  const log = options.log ?? (() => {});
  const forward = async (stream: ReadableStream<Uint8Array>) => {
    let pending = "";
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      output += text;
      const lines = (pending + text).split(/\r?\n|\r/);
      pending = lines.pop() ?? "";
      for (const line of lines) if (line.trim()) log(line);
    }
    if (pending.trim()) log(pending);
  };
  const [status] = await Promise.all([child.status, forward(child.stdout), forward(child.stderr)]);
  return {
    ok: status.success,
    status: status.signal ? `signal ${status.signal}` : `exit code ${status.code}`,
    output,
  };
}

/** The end of a subprocess's output, for an error message. */
export function tail(text: string): string {
  const trimmed = text.trim();
  return trimmed.length <= OUTPUT_TAIL ? trimmed : `…${trimmed.slice(-OUTPUT_TAIL)}`;
}
