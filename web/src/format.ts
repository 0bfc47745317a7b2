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

/** The function naming a value by the label `labels` gives it, or by `fallback` where they give none. */
export function labeller<T>(labels: readonly (readonly [T, string])[], fallback: string): (value: T) => string {
  return (value) => labels.find(([known]) => known === value)?.[1] ?? fallback;
}

export const channelLabel: (channel: Channel) => string = labeller(CHANNELS, "Unknown channel");

const DIRECTIONS: [Direction, string][] = [
  [Direction.INCOMING, "Incoming"],
  [Direction.OUTGOING, "Outgoing"],
];

export const directionLabel: (direction: Direction) => string = labeller(DIRECTIONS, "");

export const CONTACT_KINDS: [ContactKind, string][] = [
  [ContactKind.PHONE, "Phone"],
  [ContactKind.EMAIL, "Email"],
  [ContactKind.CHAT, "Chat"],
  [ContactKind.SOCIAL, "Social"],
  [ContactKind.EXTERNAL, "External id"],
];

export const contactKindLabel: (kind: ContactKind) => string = labeller(CONTACT_KINDS, "Contact");

export const REQUEST_STATUSES: [RequestStatus, string][] = [
  [RequestStatus.OPEN, "Open"],
  [RequestStatus.PENDING, "Pending"],
  [RequestStatus.CLOSED, "Closed"],
  [RequestStatus.CANCELLED, "Cancelled"],
];

export const statusLabel: (status: RequestStatus) => string = labeller(REQUEST_STATUSES, "Open");

/** A stable key for a record: `customer:ID`. */
export function refKey(ref: Pick<ResourceRef, "type" | "id">): string {
  return `${resourceLabel(ref.type)}:${ref.id}`;
}

const RESOURCE_TYPES: [ResourceType, string][] = [
  [ResourceType.CUSTOMER, "customer"],
  [ResourceType.REQUEST, "request"],
  [ResourceType.ACTIVITY, "activity"],
];

export const resourceLabel: (type: ResourceType) => string = labeller(RESOURCE_TYPES, "record");
