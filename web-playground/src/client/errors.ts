// Errors in words a person understands, from the API's `extensions.code`.

export interface GraphQLErrorShape {
  message: string;
  extensions?: Record<string, unknown>;
}

export class ApiError extends Error {
  readonly code: string;
  readonly extensions: Record<string, unknown>;

  constructor(message: string, code: string, extensions: Record<string, unknown> = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.extensions = extensions;
  }

  static from(error: GraphQLErrorShape): ApiError {
    const extensions = error.extensions ?? {};
    const code = typeof extensions.code === 'string' ? extensions.code : 'INTERNAL';
    return new ApiError(error.message, code, extensions);
  }
}

/** A sentence for the person at the keyboard. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    switch (error.code) {
      case 'UNAUTHENTICATED':
        return error.extensions.signingIn
          ? 'That username (or email) and password do not match.'
          : 'You are signed out. Please sign in again.';
      case 'FORBIDDEN':
        return 'You do not have permission to do that in this project.';
      case 'NOT_FOUND':
        return 'That does not exist, or it is not shared with you.';
      case 'BAD_USER_INPUT': {
        const field = typeof error.extensions.field === 'string' ? `${error.extensions.field}: ` : '';
        return `Please check your input. ${field}${error.message}`;
      }
      case 'CONFLICT':
        return `That clashes with something that already exists or changed meanwhile: ${error.message}`;
      case 'RATE_LIMITED': {
        const after = Number(error.extensions.retryAfter);
        return Number.isFinite(after) && after > 0
          ? `Too many attempts. Please wait ${Math.ceil(after)} seconds and try again.`
          : 'Too many attempts. Please wait a moment and try again.';
      }
      case 'NETWORK':
        return 'The server cannot be reached. Your work is kept here and sent when it is back.';
      default:
        return 'Something went wrong on the server. Please try again.';
    }
  }
  if (error instanceof TypeError) {
    return 'The server cannot be reached. Your work is kept here and sent when it is back.';
  }
  return 'Something unexpected went wrong. Please try again.';
}
