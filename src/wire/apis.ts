/**
 * API keys and the versions this build speaks. Key numbers follow Kafka's where an API has a
 * Kafka counterpart, so the tables read familiarly; the bodies are Rill's own (see protocol/).
 */
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  OffsetFetch: 9,
  FindCoordinator: 10,
  DescribeGroups: 15,
  ListGroups: 16,
  SaslHandshake: 17,
  ApiVersions: 18,
  CreateTopics: 19,
  DeleteTopics: 20,
  DeleteRecords: 21,
  InitProducerId: 22,
  OffsetForLeaderEpoch: 23,
  DescribeAcls: 29,
  CreateAcls: 30,
  DeleteAcls: 31,
  DescribeConfigs: 32,
  SaslAuthenticate: 36,
  CreatePartitions: 37,
  DeleteGroups: 42,
  IncrementalAlterConfigs: 44,
  DescribeUserScramCredentials: 50,
  AlterUserScramCredentials: 51,
  ConsumerGroupHeartbeat: 68,
  ResetGroupOffsets: 1000,
  ReplicaFetch: 1001,
  AlterPlacement: 1002,
} as const;

export type ApiKeyName = keyof typeof ApiKey;

export const apiNameByKey = new Map<number, ApiKeyName>(
  (Object.keys(ApiKey) as ApiKeyName[]).map((name) => [ApiKey[name], name]),
);

/**
 * Versions each API is spoken at: [min, max]. A key without a range is reserved: its codec
 * exists (the protocol is defined) but no handler serves it yet, so the broker answers
 * UNSUPPORTED_VERSION and ApiVersions does not list it (OffsetForLeaderEpoch: followers find
 * where they diverged through ReplicaFetch's divergingEpoch instead).
 */
export const apiVersionRanges: ReadonlyMap<number, readonly [number, number]> = new Map([
  [ApiKey.Produce, [0, 0]],
  [ApiKey.Fetch, [0, 0]],
  [ApiKey.ListOffsets, [0, 0]],
  [ApiKey.Metadata, [0, 0]],
  [ApiKey.ApiVersions, [0, 0]],
  [ApiKey.CreateTopics, [0, 0]],
  [ApiKey.DeleteTopics, [0, 0]],
  [ApiKey.InitProducerId, [0, 0]],
  [ApiKey.FindCoordinator, [0, 0]],
  [ApiKey.ConsumerGroupHeartbeat, [0, 0]],
  [ApiKey.OffsetCommit, [0, 0]],
  [ApiKey.OffsetFetch, [0, 0]],
  [ApiKey.ListGroups, [0, 0]],
  [ApiKey.DescribeGroups, [0, 0]],
  [ApiKey.ResetGroupOffsets, [0, 0]],
  [ApiKey.DeleteRecords, [0, 0]],
  [ApiKey.DescribeConfigs, [0, 0]],
  [ApiKey.CreatePartitions, [0, 0]],
  [ApiKey.DeleteGroups, [0, 0]],
  [ApiKey.IncrementalAlterConfigs, [0, 0]],
  [ApiKey.SaslHandshake, [0, 0]],
  [ApiKey.SaslAuthenticate, [0, 0]],
  [ApiKey.DescribeUserScramCredentials, [0, 0]],
  [ApiKey.AlterUserScramCredentials, [0, 0]],
  [ApiKey.DescribeAcls, [0, 0]],
  [ApiKey.CreateAcls, [0, 0]],
  [ApiKey.DeleteAcls, [0, 0]],
  [ApiKey.ReplicaFetch, [0, 0]],
  [ApiKey.AlterPlacement, [0, 0]],
]);

/** acks values on the wire. */
export const Acks = { none: 0, leader: 1, all: -1 } as const;

/** Durability a produce reached, reported per partition in the response. */
export const Durability = { sent: 0, written: 1, fsynced: 2 } as const;
export type DurabilityLevel = (typeof Durability)[keyof typeof Durability];

/** ListOffsets special timestamps (Kafka's values). */
export const OffsetSpec = { latest: -1, earliest: -2 } as const;

/** APIs a connection may call before it has authenticated on a listener that requires it. */
export const preAuthenticationApiKeys: ReadonlySet<number> = new Set([ApiKey.ApiVersions, ApiKey.SaslHandshake, ApiKey.SaslAuthenticate]);
