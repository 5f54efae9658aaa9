/* The C ABI's batch of pipelined requests (kvrdma_batch_*) from a C99 program: a batch of PUTs
 * and one of GETs, each answered byte for byte through its kvrdma_pending, and the argument
 * errors. Prints "N passed, M failed" and exits non-zero on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_check.h"
#include "kvrdma/kvrdma.h"

enum { kN = 20 };

/* Item i's value: 30 + 40 * i bytes of a pattern. */
static size_t value_of(int i, char *out) {
  size_t n = 30 + 40 * (size_t)i, b;
  for (b = 0; b < n; ++b) out[b] = (char)((b * 131 + (size_t)i * 7) & 0xff);
  return n;
}

int main(void) {
  char err[256], key[32], value[1024];
  kvrdma_config *cfg = kvrdma_config_new();
  kvrdma_server *server = NULL;
  kvrdma_client *client = NULL;
  kvrdma_batch *batch = NULL;
  kvrdma_pending *p[kN + 1];
  void *val = NULL;
  size_t len = 0;
  int i;

  CHECK(kvrdma_config_set(cfg, "listen-addr", "127.0.0.1:0", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_config_set(cfg, "memory-mb", "16", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_config_set(cfg, "mock", "true", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_server_start(cfg, &server, err, sizeof err) == KVRDMA_OK);
  kvrdma_config_free(cfg);
  if (server == NULL) {
    fprintf(stderr, "server did not start: %s\n", err);
    return 1;
  }
  cfg = kvrdma_config_new();
  CHECK(kvrdma_config_set(cfg, "server-addr", kvrdma_server_address(server), err, sizeof err) ==
        KVRDMA_OK);
  CHECK(kvrdma_config_set(cfg, "buffer-mb", "4", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_client_connect(cfg, &client, err, sizeof err) == KVRDMA_OK);
  kvrdma_config_free(cfg);
  if (client == NULL) {
    fprintf(stderr, "client did not connect: %s\n", err);
    kvrdma_server_stop(server);
    return 1;
  }

  CHECK(kvrdma_batch_new(NULL, &batch, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(batch == NULL);
  CHECK(kvrdma_batch_new(client, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_batch_new(client, &batch, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_batch_size(batch) == 0);
  CHECK(kvrdma_batch_size(NULL) == 0);
  /* An empty batch submits nothing. */
  CHECK(kvrdma_batch_submit(batch, NULL, 0, err, sizeof err) == KVRDMA_OK);

  for (i = 0; i < kN; ++i) {
    size_t n = value_of(i, value);
    snprintf(key, sizeof key, "ck%d", i);
    CHECK(kvrdma_batch_add_put(batch, key, strlen(key), value, n, 0, err, sizeof err) == KVRDMA_OK);
  }
  CHECK(kvrdma_batch_size(batch) == kN);
  /* Too little room: INVALID_ARGUMENT naming the size, nothing sent, the batch kept. */
  CHECK(kvrdma_batch_submit(batch, p, kN - 1, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(strstr(err, "kvrdma_batch_size") != NULL);
  CHECK(kvrdma_batch_size(batch) == kN);
  CHECK(kvrdma_batch_submit(batch, p, kN, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_batch_size(batch) == 0);
  for (i = 0; i < kN; ++i) {
    CHECK(kvrdma_pending_wait(p[i], NULL, NULL, err, sizeof err) == KVRDMA_OK);
    kvrdma_pending_free(p[i]);
  }

  /* The same batch again, with GETs in reverse order and one absent key. */
  for (i = kN - 1; i >= 0; --i) {
    snprintf(key, sizeof key, "ck%d", i);
    CHECK(kvrdma_batch_add_get(batch, key, strlen(key), err, sizeof err) == KVRDMA_OK);
  }
  CHECK(kvrdma_batch_add_get(batch, "absent", 6, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_batch_submit(batch, p, kN + 1, err, sizeof err) == KVRDMA_OK);
  for (i = 0; i < kN; ++i) {
    size_t n = value_of(kN - 1 - i, value);
    CHECK(kvrdma_pending_wait(p[i], &val, &len, err, sizeof err) == KVRDMA_OK);
    CHECK(len == n && val != NULL && memcmp(val, value, n) == 0);
    kvrdma_free(val);
    val = NULL;
  }
  CHECK(kvrdma_pending_wait(p[kN], &val, &len, err, sizeof err) == KVRDMA_NOT_FOUND);
  CHECK(val == NULL && len == 0);
  for (i = 0; i <= kN; ++i) kvrdma_pending_free(p[i]);

  /* Argument errors. */
  CHECK(kvrdma_batch_add_get(NULL, "k", 1, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_batch_add_get(batch, NULL, 1, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_batch_add_put(batch, "k", 1, NULL, 1, 0, err, sizeof err) ==
        KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_batch_add_put(batch, "k", 1, NULL, 0, 0, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_batch_submit(batch, NULL, 1, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_batch_submit(NULL, p, 1, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  /* A batch freed with requests added and never submitted sends nothing. */
  kvrdma_batch_free(batch);
  kvrdma_batch_free(NULL);
  CHECK(kvrdma_get(client, "k", 1, &val, &len, err, sizeof err) == KVRDMA_NOT_FOUND);

  kvrdma_client_close(client);
  kvrdma_server_stop(server);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
