/** Turning kernel status codes into exceptions that say what went wrong. */

const STATUS_NAMES: Record<number, string> = {
  1: "invalid argument",
  2: "unsupported",
  3: "unknown handle",
  4: "internal error",
};

/** A failed kernel call: `status` is the Rust status code, the message comes from the library. */
export class KernelError extends Error {
  constructor(readonly fn: string, readonly status: number, detail: string) {
    super(`${fn}: ${detail} (${STATUS_NAMES[status] ?? `status ${status}`})`);
    this.name = "KernelError";
  }
}

type LastError = (buf: Uint8Array, cap: number) => number;
let lastError: LastError | undefined;

/** Called once by the loader so `check` can read the library's last error message. */
export function useLastError(read: LastError): void {
  lastError = read;
}

/** Reads a UTF-8 string the library writes into a caller buffer (the first call sizes it). */
export function readText(write: (buf: Uint8Array, cap: number) => number): string {
  const len = write(new Uint8Array(0), 0);
  const buf = new Uint8Array(len);
  write(buf, len);
  return new TextDecoder().decode(buf);
}

/** Throws a KernelError unless `status` is 0. */
export function check(status: number, fn: string): void {
  if (status === 0) return;
  const detail = lastError ? readText(lastError) : "no message (library not initialised)";
  throw new KernelError(fn, status, detail);
}
