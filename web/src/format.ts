// How records read on screen: names, dates and enum labels.

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Channel, Direction, type ResourceRef, ResourceType } from "./gen/customer_context/v1/common_pb.js";
import { ContactKind, type Customer } from "./gen/customer_context/v1/customer_pb.js";
import { RequestStatus } from "./gen/customer_context/v1/request_pb.js";

export function customerName(customer: Customer): string {
  const name = [customer.firstName, customer.lastName].filter(Boolean).join(" ");
  return name || customer.company || customer.customerNumber || "Unnamed customer";
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });

export function when(ts: Timestamp | undefined): string {
  return ts ? dateTime.format(timestampDate(ts)) : "";
}

export function day(ts: Timestamp | undefined): string {
  return ts ? dateOnly.format(timestampDate(ts)) : "";
}

export const CHANNELS: [Channel, string][] = [
  [Channel.VOICE, "Voice"],
  [Channel.CHAT, "Chat"],
  [Channel.EMAIL, "Email"],
  [Channel.SMS, "SMS"],
  [Channel.SOCIAL, "Social"],
  [Channel.WEB, "Web"],
  [Channel.IN_PERSON, "In person"],
  [Channel.OTHER, "Other"],
];

export function channelLabel(channel: Channel): string {
  return CHANNELS.find(([value]) => value === channel)?.[1] ?? "Unknown channel";
}

export function directionLabel(direction: Direction): string {
  switch (direction) {
    case Direction.INCOMING:
      return "Incoming";
    case Direction.OUTGOING:
      return "Outgoing";
    default:
      return "";
  }
}

export const CONTACT_KINDS: [ContactKind, string][] = [
  [ContactKind.PHONE, "Phone"],
  [ContactKind.EMAIL, "Email"],
  [ContactKind.CHAT, "Chat"],
  [ContactKind.SOCIAL, "Social"],
  [ContactKind.EXTERNAL, "External id"],
];

export function contactKindLabel(kind: ContactKind): string {
  return CONTACT_KINDS.find(([value]) => value === kind)?.[1] ?? "Contact";
}

export const REQUEST_STATUSES: [RequestStatus, string][] = [
  [RequestStatus.OPEN, "Open"],
  [RequestStatus.PENDING, "Pending"],
  [RequestStatus.CLOSED, "Closed"],
  [RequestStatus.CANCELLED, "Cancelled"],
];

export function statusLabel(status: RequestStatus): string {
  return REQUEST_STATUSES.find(([value]) => value === status)?.[1] ?? "Open";
}

/** A stable key for a record: `customer:ID`. */
export function refKey(ref: Pick<ResourceRef, "type" | "id">): string {
  return `${resourceLabel(ref.type)}:${ref.id}`;
}

export function resourceLabel(type: ResourceType): string {
  switch (type) {
    case ResourceType.CUSTOMER:
      return "customer";
    case ResourceType.REQUEST:
      return "request";
    case ResourceType.ACTIVITY:
      return "activity";
    default:
      return "record";
  }
}
