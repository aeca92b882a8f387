/**
 * Bounds of the HTTP listener (/metrics, /healthz, /readyz, the console). Like the TCP listener's
 * in src/lib/limits.ts: every input from the network is bounded before it is buffered. Kept here
 * rather than in lib/limits.ts, whose list is the protocol's (kept equal to the README by a test).
 */

/** Request line plus headers; past it Node answers 431 and closes. */
export const httpHeaderBytesMax = 16 * 1024;
/** Longest request target (path and query) served; past it: 414. */
export const httpUrlBytesMax = 2048;
/** Connections open at once; past it Node closes new ones at once. */
export const httpConnectionsMax = 64;
/** Time to receive the whole request head. */
export const httpHeadersTimeoutMs = 10_000;
/** Time to receive the whole request (there is no body: this bounds a trickled head). */
export const httpRequestTimeoutMs = 15_000;
/** An idle keep-alive connection is closed after this long. */
export const httpKeepAliveTimeoutMs = 5_000;
/** Requests served on one connection before it is closed. */
export const httpRequestsPerSocketMax = 10_000;
/** Largest console asset read from disk at start. */
export const httpAssetBytesMax = 1024 * 1024;
/** Partitions and groups /api/overview lists at most (the rest is counted as omitted). */
export const overviewPartitionsMax = 2000;
export const overviewGroupsMax = 200;
/** Rebalance events per group /api/overview lists at most (newest). */
export const overviewHistoryMax = 20;
