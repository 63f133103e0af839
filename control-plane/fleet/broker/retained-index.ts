// An exact-topic index over aedes' retained messages. aedes' memory persistence answers every
// SUBSCRIBE by testing each retained message's topic against the filter — O(retained) per filter.
// A fleet retains one policy (and one status) per agent, and every agent subscribes to its own
// policy and commands on connect, so at 5,000 agents each connect scanned ~10,000 topics twice
// and a connect wave cost O(agents²): CONNACKs took tens of seconds and agents timed out.
// Agents subscribe to exact topics (no wildcards: the ACL refuses them), which this index answers
// with a map lookup; a filter with a wildcard still goes to the persistence's own scan.

import { Readable } from 'node:stream';

interface RetainedPacket {
  readonly topic: string;
  readonly payload: Buffer | string;
}

/** The part of aedes' persistence (callback flavour, as aedes uses it) this index wraps. */
export interface RetainedPersistence {
  storeRetained(packet: RetainedPacket, cb?: (err: Error | null) => void): Promise<void> | void;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

const hasWildcard = (filter: string): boolean => filter.includes('+') || filter.includes('#');

/**
 * Wraps `persistence` in place (aedes creates its persistence in listen(), so call this right after
 * it and before any client connects). Retained messages stay in the persistence as before; the
 * index holds the same packets by topic.
 */
export function indexRetainedByTopic(candidate: unknown): void {
  const persistence = candidate as RetainedPersistence;
  if (typeof persistence?.storeRetained !== 'function' || typeof persistence.createRetainedStream !== 'function' || typeof persistence.createRetainedStreamCombi !== 'function') {
    throw new Error('the MQTT broker\'s persistence does not have the retained-message methods this control plane indexes (aedes changed?)');
  }
  const byTopic = new Map<string, RetainedPacket>();
  const store = persistence.storeRetained.bind(persistence);
  const scan = persistence.createRetainedStream.bind(persistence);
  const scanCombi = persistence.createRetainedStreamCombi.bind(persistence);
  persistence.storeRetained = (packet, cb) => {
    // As the memory persistence does: an empty payload deletes the topic's retained message.
    if (packet.payload.length === 0) byTopic.delete(packet.topic);
    else byTopic.set(packet.topic, { ...packet });
    return store(packet, cb);
  };
  const lookup = (filters: readonly string[]): RetainedPacket[] => filters.flatMap((f) => byTopic.get(f) ?? []);
  persistence.createRetainedStream = (pattern) => (hasWildcard(pattern) ? scan(pattern) : Readable.from(lookup([pattern])));
  persistence.createRetainedStreamCombi = (patterns) => (patterns.some(hasWildcard) ? scanCombi(patterns) : Readable.from(lookup(patterns)));
}
