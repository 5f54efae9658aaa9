/* kvrdma C ABI — a stable C99 interface to the kvrdma client and server.
 *
 * Conventions:
 * - Ownership: what *_new, *_start, *_connect, *_get_view, *_register and *_allocate return
 *   belongs to the caller, who gives it back with the matching *_free, *_stop, *_close,
 *   *_view_release or kvrdma_mem_release. Value bytes that
 *   kvrdma_get allocates, and stats text, are freed with kvrdma_free, never with free().
 * - NULL: every destroy function accepts NULL. errbuf may be NULL; when given it always receives
 *   a NUL-terminated message (truncated to errlen), empty on success.
 * - Errors: every fallible call returns a kvrdma_code (KVRDMA_OK = 0). No C++ exception ever
 *   crosses this interface.
 * - Threads: a client may be used from several threads at once; a config must not be changed
 *   while another thread reads it. _start and _connect copy the config: free it when you like.
 * - Keys and values are binary-safe (pointer + length).
 */
#ifndef KVRDMA_KVRDMA_H_
#define KVRDMA_KVRDMA_H_

#include <stddef.h>
#include <stdint.h>

#if defined(KVRDMA_STATIC)
#define KVRDMA_C_EXPORT
#else
#define KVRDMA_C_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kvrdma_config kvrdma_config; /* string-keyed settings */
typedef struct kvrdma_server kvrdma_server;
typedef struct kvrdma_client kvrdma_client;
typedef struct kvrdma_view kvrdma_view; /* zero-copy value in the client's receive buffer */
typedef struct kvrdma_mem kvrdma_mem;   /* caller memory registered or allocated by a client */

/* Kinds of memory for kvrdma_client_register; never renumbered. Host memory only today. */
enum { KVRDMA_MEM_HOST = 0 };

/* Never renumbered; the same numbers as kvrdma::Code and the wire. */
typedef enum {
  KVRDMA_OK = 0,
  KVRDMA_NOT_FOUND,
  KVRDMA_INVALID_ARGUMENT,
  KVRDMA_RESOURCE_EXHAUSTED,
  KVRDMA_FAILED_PRECONDITION,
  KVRDMA_UNAVAILABLE,
  KVRDMA_DEADLINE_EXCEEDED,
  KVRDMA_PERMISSION_DENIED,
  KVRDMA_INTERNAL
} kvrdma_code;

/* "MAJOR.MINOR.PATCH". */
KVRDMA_C_EXPORT const char *kvrdma_version(void);
/* "OK", "NOT_FOUND", ...; "UNKNOWN" for a number outside the enum. */
KVRDMA_C_EXPORT const char *kvrdma_code_name(int code);

/* Settings are the CLI flag names without dashes: listen-addr, memory-mb, mock, provider,
 * server-addr, buffer-mb, client-id, timeout-ms, inline-threshold, eviction, log-level, ...
 * An unknown name or a bad value is KVRDMA_INVALID_ARGUMENT with a message. */
KVRDMA_C_EXPORT kvrdma_config *kvrdma_config_new(void);
KVRDMA_C_EXPORT int kvrdma_config_set(kvrdma_config *config, const char *name, const char *value,
                                      char *errbuf, size_t errlen);
KVRDMA_C_EXPORT void kvrdma_config_free(kvrdma_config *config);

/* Starts a server with the config's server settings. listen-addr 127.0.0.1:0 picks a free port;
 * kvrdma_server_address returns the address bound (valid until kvrdma_server_stop). */
KVRDMA_C_EXPORT int kvrdma_server_start(const kvrdma_config *config, kvrdma_server **out,
                                        char *errbuf, size_t errlen);
KVRDMA_C_EXPORT const char *kvrdma_server_address(const kvrdma_server *server);
KVRDMA_C_EXPORT void kvrdma_server_stop(kvrdma_server *server);

/* Connects a client with the config's client settings (server-addr, buffer-mb, timeout-ms...). */
KVRDMA_C_EXPORT int kvrdma_client_connect(const kvrdma_config *config, kvrdma_client **out,
                                          char *errbuf, size_t errlen);
KVRDMA_C_EXPORT void kvrdma_client_close(kvrdma_client *client);

/* Stores a value; ttl_ms 0 means no expiry. */
KVRDMA_C_EXPORT int kvrdma_put(kvrdma_client *client, const void *key, size_t keylen,
                               const void *val, size_t vallen, uint64_t ttl_ms, char *errbuf,
                               size_t errlen);
/* Copies the value into memory the library allocates: *val is freed with kvrdma_free. */
KVRDMA_C_EXPORT int kvrdma_get(kvrdma_client *client, const void *key, size_t keylen, void **val,
                               size_t *vallen, char *errbuf, size_t errlen);
/* Copies the value into buf. When cap is too small: KVRDMA_FAILED_PRECONDITION and *vallen is
 * set to the size needed. When buf lies inside memory this client registered or allocated
 * (kvrdma_client_register / kvrdma_client_allocate), the server writes the value straight there
 * (zero copy, as kvrdma_get_into_mem). */
KVRDMA_C_EXPORT int kvrdma_get_into(kvrdma_client *client, const void *key, size_t keylen,
                                    void *buf, size_t cap, size_t *vallen, char *errbuf,
                                    size_t errlen);
/* The value where the server wrote it, zero copy; its buffer space is held until released. */
KVRDMA_C_EXPORT int kvrdma_get_view(kvrdma_client *client, const void *key, size_t keylen,
                                    kvrdma_view **out, char *errbuf, size_t errlen);
KVRDMA_C_EXPORT const void *kvrdma_view_data(const kvrdma_view *view);
KVRDMA_C_EXPORT size_t kvrdma_view_size(const kvrdma_view *view);
KVRDMA_C_EXPORT void kvrdma_view_release(kvrdma_view *view);

/* Pipelined requests, for a C event loop: a submit returns at once with a handle (the request is
 * in flight over the request channel; without one it ran already), kvrdma_pending_poll says
 * without blocking whether it finished, kvrdma_pending_wait returns its outcome (once). Free
 * every handle with kvrdma_pending_free (NULL is fine; freeing an unfinished one abandons it).
 * The client must outlive its handles; one thread at a time per handle. */
typedef struct kvrdma_pending kvrdma_pending;
KVRDMA_C_EXPORT int kvrdma_get_submit(kvrdma_client *client, const void *key, size_t keylen,
                                      kvrdma_pending **out, char *errbuf, size_t errlen);
KVRDMA_C_EXPORT int kvrdma_put_submit(kvrdma_client *client, const void *key, size_t keylen,
                                      const void *val, size_t vallen, uint64_t ttl_ms,
                                      kvrdma_pending **out, char *errbuf, size_t errlen);
/* *done = 1 when kvrdma_pending_wait would not block, else 0. */
KVRDMA_C_EXPORT int kvrdma_pending_poll(kvrdma_pending *pending, int *done, char *errbuf,
                                        size_t errlen);
/* The request's code. For a GET, *val (freed with kvrdma_free) and *vallen receive the value;
 * for a PUT val and vallen may be NULL. */
KVRDMA_C_EXPORT int kvrdma_pending_wait(kvrdma_pending *pending, void **val, size_t *vallen,
                                        char *errbuf, size_t errlen);
KVRDMA_C_EXPORT void kvrdma_pending_free(kvrdma_pending *pending);

/* A batch of pipelined requests (kvrdma::Client::Batch): add GETs and PUTs (key and value are
 * copied), then kvrdma_batch_submit posts them all and wakes each server once (one doorbell per
 * node instead of one per request). It stores one kvrdma_pending per request added, in order,
 * into pendings[0 .. kvrdma_batch_size(batch) - 1] (cap: room in pendings; INVALID_ARGUMENT and
 * nothing sent when it is smaller); each request's code comes from kvrdma_pending_wait, and
 * each handle is freed with kvrdma_pending_free. The batch is empty after a submit and may be
 * filled again; free it with kvrdma_batch_free (NULL is fine). One thread at a time per batch;
 * the client must outlive the batch and its handles. */
typedef struct kvrdma_batch kvrdma_batch;
KVRDMA_C_EXPORT int kvrdma_batch_new(kvrdma_client *client, kvrdma_batch **out, char *errbuf,
                                     size_t errlen);
KVRDMA_C_EXPORT int kvrdma_batch_add_get(kvrdma_batch *batch, const void *key, size_t keylen,
                                         char *errbuf, size_t errlen);
KVRDMA_C_EXPORT int kvrdma_batch_add_put(kvrdma_batch *batch, const void *key, size_t keylen,
                                         const void *val, size_t vallen, uint64_t ttl_ms,
                                         char *errbuf, size_t errlen);
/* Requests added since the last submit; 0 for NULL. */
KVRDMA_C_EXPORT size_t kvrdma_batch_size(const kvrdma_batch *batch);
KVRDMA_C_EXPORT int kvrdma_batch_submit(kvrdma_batch *batch, kvrdma_pending **pendings, size_t cap,
                                        char *errbuf, size_t errlen);
KVRDMA_C_EXPORT void kvrdma_batch_free(kvrdma_batch *batch);

/* Batches: item i is keys[i] / keylens[i] (and vals[i] / vallens[i]), i < n; codes[i] receives
 * its kvrdma_code. The call returns KVRDMA_OK when every item succeeded, else the code of the
 * first failed item, with "item <i>: <message>" in errbuf; look at codes[] for the others. An
 * argument error (NULL arrays) fails the whole call and sets every codes[i] (when codes is given).
 * n == 0 is KVRDMA_OK.
 *
 * kvrdma_get_many: one round trip for many keys (duplicates allowed). views[i] receives a view of
 * key i, zero copy when large (release each with kvrdma_view_release), or NULL when codes[i] is
 * not KVRDMA_OK. A batch larger than the receive buffer still completes (values are then copied
 * out of the buffer). */
KVRDMA_C_EXPORT int kvrdma_get_many(kvrdma_client *client, size_t n, const void *const *keys,
                                    const size_t *keylens, kvrdma_view **views, int *codes,
                                    char *errbuf, size_t errlen);
/* kvrdma_put_many: values up to the inline threshold go together in one round trip, larger ones
 * one by one through the two-phase path; ttl_ms applies to every item (0: no expiry). */
KVRDMA_C_EXPORT int kvrdma_put_many(kvrdma_client *client, size_t n, const void *const *keys,
                                    const size_t *keylens, const void *const *vals,
                                    const size_t *vallens, uint64_t ttl_ms, int *codes,
                                    char *errbuf, size_t errlen);

/* Caller memory: values land in, and are published from, memory the application owns, with no
 * copy (README.md "Caller memory").
 *
 * kvrdma_client_register registers len bytes at ptr (kind KVRDMA_MEM_HOST), which the caller
 * keeps alive until the kvrdma_mem is released; libfabric registers any host memory (a too-low
 * locked-memory limit is an error naming `ulimit -l`); the mock transport cannot and answers
 * KVRDMA_FAILED_PRECONDITION: use kvrdma_client_allocate there. kvrdma_client_allocate hands out
 * len zeroed bytes of registered memory (kvrdma_mem_data) the application uses as its own.
 * *out is released with kvrdma_mem_release (NULL is fine), which also frees allocated memory;
 * a kvrdma_mem may outlive its client (it then only frees). */
KVRDMA_C_EXPORT int kvrdma_client_register(kvrdma_client *c, void *ptr, size_t len, int kind,
                                           kvrdma_mem **out, char *errbuf, size_t errlen);
KVRDMA_C_EXPORT int kvrdma_client_allocate(kvrdma_client *c, size_t len, kvrdma_mem **out,
                                           char *errbuf, size_t errlen);
/* The first byte and the length of the memory; NULL / 0 for NULL. */
KVRDMA_C_EXPORT void *kvrdma_mem_data(const kvrdma_mem *m);
KVRDMA_C_EXPORT size_t kvrdma_mem_size(const kvrdma_mem *m);
KVRDMA_C_EXPORT void kvrdma_mem_release(kvrdma_mem *m);

/* The server writes the value of key straight to kvrdma_mem_data(m) + offset; *vallen receives
 * its length. A value longer than capacity is KVRDMA_FAILED_PRECONDITION with *vallen set to the
 * size needed and nothing written; offset + capacity beyond kvrdma_mem_size(m) is
 * KVRDMA_INVALID_ARGUMENT. After KVRDMA_DEADLINE_EXCEEDED, KVRDMA_UNAVAILABLE or KVRDMA_INTERNAL
 * the server's write may still land in [offset, +capacity) until the request's deadline
 * (timeout-ms): do not reuse or release that memory before then. */
KVRDMA_C_EXPORT int kvrdma_get_into_mem(kvrdma_client *c, const void *key, size_t keylen,
                                        kvrdma_mem *m, size_t offset, size_t capacity,
                                        size_t *vallen, char *errbuf, size_t errlen);
/* Stores the len bytes at kvrdma_mem_data(m) + offset under key (ttl_ms 0: no expiry); large
 * values are written by the transport straight from that memory, which must not change until
 * the call returns. */
KVRDMA_C_EXPORT int kvrdma_put_from(kvrdma_client *c, const void *key, size_t keylen, kvrdma_mem *m,
                                    size_t offset, size_t len, uint64_t ttl_ms, char *errbuf,
                                    size_t errlen);
/* Batches of the two above, with the batch conventions: item i goes to / comes from mems[i] at
 * offsets[i] (capacities[i] / lens[i] bytes); vallens[i] receives the length of value i (also
 * the size needed when too small; 0 when unknown). All transport writes of a call are in flight
 * at once. */
KVRDMA_C_EXPORT int kvrdma_get_many_into(kvrdma_client *c, size_t n, const void *const *keys,
                                         const size_t *keylens, kvrdma_mem *const *mems,
                                         const size_t *offsets, const size_t *capacities,
                                         size_t *vallens, int *codes, char *errbuf, size_t errlen);
KVRDMA_C_EXPORT int kvrdma_put_many_from(kvrdma_client *c, size_t n, const void *const *keys,
                                         const size_t *keylens, kvrdma_mem *const *mems,
                                         const size_t *offsets, const size_t *lens, uint64_t ttl_ms,
                                         int *codes, char *errbuf, size_t errlen);

/* Removes a key; KVRDMA_NOT_FOUND when it was absent. */
KVRDMA_C_EXPORT int kvrdma_delete(kvrdma_client *client, const void *key, size_t keylen,
                                  char *errbuf, size_t errlen);

/* The server's counters as NUL-terminated text, one "name=value" line each (keys, puts, gets,
 * get_hits, get_misses, deletes, evictions, pool_used_bytes, transport, version, ...; names may be
 * added, never renamed). *text is freed with kvrdma_free; len may be NULL. kvrdma_client_stats asks
 * the server the client is connected to; kvrdma_server_stats reads an embedded server directly. */
KVRDMA_C_EXPORT int kvrdma_client_stats(kvrdma_client *client, char **text, size_t *len,
                                        char *errbuf, size_t errlen);
KVRDMA_C_EXPORT int kvrdma_server_stats(const kvrdma_server *server, char **text, size_t *len,
                                        char *errbuf, size_t errlen);
/* kvrdma_client_stats_after waits, without polling, until the server's "version" line moves past
 * `version` or max_wait_ms (at most 10000) passes, then answers as kvrdma_client_stats. "version"
 * moves when keys, sessions, reservations, pins or the pool change (read counters do not move
 * it); wait for a condition by passing back the version the previous answer carried (0 at first).
 */
KVRDMA_C_EXPORT int kvrdma_client_stats_after(kvrdma_client *client, uint64_t version,
                                              uint32_t max_wait_ms, char **text, size_t *len,
                                              char *errbuf, size_t errlen);

/* An embedded server's metrics in Prometheus text format 0.0.4, as kv-server --metrics-addr
 * serves them at /metrics (families in docs/metrics.md): NUL-terminated, freed with kvrdma_free;
 * len may be NULL. Works whether or not "metrics-addr" is set. */
KVRDMA_C_EXPORT int kvrdma_server_metrics(const kvrdma_server *server, char **text, size_t *len,
                                          char *errbuf, size_t errlen);

/* Frees memory the library gave the caller (kvrdma_get values, stats and metrics text). NULL is
 * fine. */
KVRDMA_C_EXPORT void kvrdma_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* KVRDMA_KVRDMA_H_ */
