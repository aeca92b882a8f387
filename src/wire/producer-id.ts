/**
 * InitProducerId (key 22) bodies, MessagePack like the other control APIs; protocol/apis/
 * init-producer-id.md describes them field by field.
 *
 * Request: a map. No field is required today; the broker ignores keys it does not know (room for
 * a transactional id later). Response: the producer id (unique on this broker for ever: ids are
 * reserved durably before they are handed out) and its epoch, 0 for a new id.
 */
import { requestSchema as rq, responseSchema as rs } from './schema.js';

/** Producer ids fit the batch header's int64 and stay exact as JavaScript numbers. */
export const producerIdMax = Number.MAX_SAFE_INTEGER;
/** Epochs are the batch header's int16; a producer that would pass it needs a new id. */
export const producerEpochMax = 0x7fff;

/** Record sequence numbers are int32 >= 0 and wrap from 2^31 - 1 to 0, as in Kafka. */
export const sequenceMax = 0x7fffffff;

/** The sequence `increment` records after `sequence`, wrapping past sequenceMax to 0. */
export function sequenceAfter(sequence: number, increment: number): number {
  const next = sequence + increment;
  return next > sequenceMax ? next - sequenceMax - 1 : next;
}

export type InitProducerIdRequest = Record<string, never>;

export interface InitProducerIdResponse {
  producerId: number;
  producerEpoch: number;
}

export function encodeInitProducerIdRequest(): InitProducerIdRequest {
  return {};
}

export function decodeInitProducerIdRequest(value: unknown): InitProducerIdRequest {
  rq.object(value, 'body');
  return {};
}

export function decodeInitProducerIdResponse(value: unknown): InitProducerIdResponse {
  const obj = rs.object(value, 'body');
  return {
    producerId: rs.int(obj.producerId, 'producerId', 0, producerIdMax),
    producerEpoch: rs.int(obj.producerEpoch, 'producerEpoch', 0, producerEpochMax),
  };
}
