/**
 * The topic-changing requests on a broker in a cluster: the same requests and answers as on a
 * single broker (admin.ts, admin-ops.ts), with the change made in etcd (broker/cluster-topics.ts)
 * and answered once this broker has applied it. Authorization is the single broker's.
 */
import { RillError } from '../../lib/errors.js';
import { decodeCreateTopicsRequest, decodeDeleteTopicsRequest, normalizeTopicConfig, defaultTopicConfig } from '../../wire/control.js';
import { decodeAlterConfigsRequest, decodeAlterPlacementRequest, decodeCreatePartitionsRequest } from '../../wire/admin-ops.js';
import type { ClusterTopics } from '../cluster-topics.js';
import { msgpackReply, type Reply, type RequestContext } from '../connection.js';
import { clusterResource, type Access } from '../access.js';
import { body, requireCluster, requireTopic } from './admin.js';

type Result = { name: string; errorCode: number; errorMessage: string };

/** etcd failing (unreachable, a deadline passed) is a retriable error for the client, not an internal one. */
function asRillError(error: unknown): RillError {
  if (error instanceof RillError) return error;
  return new RillError('REQUEST_TIMED_OUT', `etcd did not take the change (${(error as Error).message}); nothing was changed unless a retry finds it done`);
}

async function topicResult(name: string, action: () => Promise<void>): Promise<Result> {
  try {
    await action();
    return { name, errorCode: 0, errorMessage: '' };
  } catch (error) {
    const rill = asRillError(error);
    return { name, errorCode: rill.errorCode, errorMessage: rill.message };
  }
}

export async function handleClusterCreateTopics(context: RequestContext, topics: ClusterTopics, access: Access): Promise<Reply> {
  const request = decodeCreateTopicsRequest(body(context));
  const anyName = !access.enforced || access.allowsQuietly(context.connection, 'cluster', clusterResource, 'create');
  const results = await Promise.all(request.topics.map((topic) => topicResult(topic.name, async () => {
    if (!anyName) requireTopic(access, context.connection, topic.name, 'create');
    await topics.create(topic.name, topic.partitions, topic.replicationFactor, { ...defaultTopicConfig, ...normalizeTopicConfig(topic.config) });
  })));
  return msgpackReply({ topics: results });
}

export async function handleClusterDeleteTopics(context: RequestContext, topics: ClusterTopics, access: Access): Promise<Reply> {
  const request = decodeDeleteTopicsRequest(body(context));
  const results = await Promise.all(request.topics.map((name) => topicResult(name, async () => {
    requireTopic(access, context.connection, name, 'delete');
    await topics.delete(name);
  })));
  return msgpackReply({ topics: results });
}

export async function handleClusterCreatePartitions(context: RequestContext, topics: ClusterTopics, access: Access): Promise<Reply> {
  const request = decodeCreatePartitionsRequest(body(context));
  const results = await Promise.all(request.topics.map(({ name, count }) => topicResult(name, async () => {
    requireTopic(access, context.connection, name, 'alter');
    await topics.addPartitions(name, count);
  })));
  return msgpackReply({ topics: results });
}

export async function handleClusterAlterConfigs(context: RequestContext, topics: ClusterTopics, access: Access): Promise<Reply> {
  const request = decodeAlterConfigsRequest(body(context));
  const resources = await Promise.all(request.resources.map(async ({ type, name, set, reset }) => {
    try {
      if (type === 'broker') {
        requireCluster(access, context.connection, 'alter');
        throw new RillError('INVALID_CONFIG', 'the broker configuration cannot be changed at run time; change its file, environment or flags and restart');
      }
      requireTopic(access, context.connection, name, 'alter');
      const config = await topics.alterConfig(name, set, reset);
      return { type, name, errorCode: 0, errorMessage: '', config };
    } catch (error) {
      const rill = asRillError(error);
      return { type, name, errorCode: rill.errorCode, errorMessage: rill.message, config: null };
    }
  }));
  return msgpackReply({ resources });
}

/** AlterPlacement (rebalance, decommission): alter on the cluster. */
export async function handleAlterPlacement(context: RequestContext, topics: ClusterTopics, access: Access): Promise<Reply> {
  const request = decodeAlterPlacementRequest(body(context));
  requireCluster(access, context.connection, 'alter');
  try {
    return msgpackReply({ moves: await topics.requestPlacement(request.action, request.brokerId) });
  } catch (error) {
    throw asRillError(error);
  }
}
