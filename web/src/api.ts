// The gRPC-web clients of the public API (generated from proto/), one transport to this page's own origin, and
// readers of the rich error details the service puts in statuses.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ActivityService } from "./gen/customer_context/v1/activity_pb.js";
import { ContextService } from "./gen/customer_context/v1/context_pb.js";
import { CustomerService } from "./gen/customer_context/v1/customer_pb.js";
import { RequestService } from "./gen/customer_context/v1/request_pb.js";
import { WatchService } from "./gen/customer_context/v1/watch_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { Session } from "./session.js";

/** How long a unary call may take before the page gives up on it. */
export const CALL_TIMEOUT_MS = 15_000;

export interface Api {
  customers: Client<typeof CustomerService>;
  requests: Client<typeof RequestService>;
  activities: Client<typeof ActivityService>;
  context: Client<typeof ContextService>;
  watch: Client<typeof WatchService>;
}

/** Clients acting as the session's agent (x-agent-id) with its API key, if any (authorization: Bearer). */
export function connect(session: Session): Api {
  const identify: Interceptor = (next) => (request) => {
    request.header.set("x-agent-id", session.agent);
    if (session.apiKey) request.header.set("authorization", `Bearer ${session.apiKey}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({
    baseUrl: window.location.origin,
    interceptors: [identify],
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  return {
    customers: createClient(CustomerService, transport),
    requests: createClient(RequestService, transport),
    activities: createClient(ActivityService, transport),
    context: createClient(ContextService, transport),
    watch: createClient(WatchService, transport),
  };
}

/** One field violation of an INVALID_ARGUMENT: its path (`customer.tags[2]`) and what is wrong. */
export interface FieldError {
  field: string;
  description: string;
  reason: string;
}

export function connectError(error: unknown): ConnectError {
  return ConnectError.from(error);
}

/** The field violations of an error (google.rpc.BadRequest in the status details). */
export function fieldErrors(error: unknown): FieldError[] {
  const err = connectError(error);
  return err
    .findDetails(BadRequestSchema)
    .flatMap((details) => details.fieldViolations)
    .map((violation) => ({ field: violation.field, description: violation.description, reason: violation.reason }));
}

/** The ErrorInfo of an error: its reason (`VERSION_MISMATCH`) and metadata. */
export function errorInfo(error: unknown): { reason: string; metadata: Record<string, string> } | null {
  const info = connectError(error).findDetails(ErrorInfoSchema)[0];
  return info ? { reason: info.reason, metadata: info.metadata } : null;
}

/** A save refused because someone else changed the record since it was loaded, and who did. */
export function staleSave(error: unknown): { updatedBy: string } | null {
  const err = connectError(error);
  if (err.code !== Code.Aborted && err.code !== Code.FailedPrecondition) return null;
  const info = errorInfo(err);
  if (!info || (info.reason !== "VERSION_MISMATCH" && info.reason !== "EDIT_CONFLICT")) return null;
  return { updatedBy: info.metadata["updated_by"] ?? "" };
}

/** A short sentence for an error shown to the agent. */
export function describe(error: unknown): string {
  const err = connectError(error);
  switch (err.code) {
    case Code.PermissionDenied:
      return `Not allowed: ${err.rawMessage}`;
    case Code.Unauthenticated:
      return `Sign-in refused: ${err.rawMessage}`;
    case Code.Unavailable:
      return "The service is not reachable right now; try again in a moment.";
    case Code.DeadlineExceeded:
      return "The service took too long to answer; try again.";
    default:
      return err.rawMessage || `Failed (${Code[err.code]})`;
  }
}

export { Code, ConnectError };
