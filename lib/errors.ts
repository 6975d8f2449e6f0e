/**
 * The one error type of lib/io: a file we read (or were asked to write) is not what it must be.
 * It always names the file and, when the problem belongs to one tensor, that tensor, so a user
 * with a broken multi-gigabyte checkpoint can see at once which shard and which weight is at fault.
 */
export class FormatError extends Error {
  override name = "FormatError";

  constructor(
    /** The file (or model directory) being read or written. */
    readonly file: string,
    /** What is wrong, ideally "expected X, found Y". */
    readonly problem: string,
    /** The tensor the problem belongs to, when there is one. */
    readonly tensor?: string,
  ) {
    super(tensor === undefined ? `${file}: ${problem}` : `${file}: tensor "${tensor}": ${problem}`);
  }
}
