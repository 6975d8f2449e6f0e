/**
 * Errors a request can end in, in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`), so
 * client libraries raise their usual exceptions (BadRequestError, NotFoundError, …) with our message.
 */
export type ApiErrorType = "invalid_request_error" | "not_found_error" | "server_error";

export class ApiError extends Error {
  override name = "ApiError";

  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType = "invalid_request_error",
    /** The request field at fault, e.g. "messages[0].content". */
    readonly param: string | null = null,
    readonly code: string | null = null,
    /** Extra response headers (Allow, Retry-After). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** An error as the response to send: ApiErrors as they are, anything else a 500 with its message. */
export function errorResponse(error: unknown): Response {
  const api = error instanceof ApiError
    ? error
    : new ApiError(500, `internal error: ${(error as Error)?.message ?? String(error)}`, "server_error");
  return Response.json(api.body(), { status: api.status, headers: api.headers });
}
