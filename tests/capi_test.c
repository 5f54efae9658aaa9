/* The C ABI from a C99 program: every call and its error paths, and one client shared by threads.
 * Prints "N passed, M failed" and exits non-zero on any failure. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c99 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "c_check.h"
#include "kvrdma/kvrdma.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value of counter `name` in stats text, or -1. */
static long long stat_value(const char *text, const char *name) {
  size_t n = strlen(name);
  const char *p = text;
  while (p != NULL && *p != '\0') {
    if (strncmp(p, name, n) == 0 && p[n] == '=') return atoll(p + n + 1);
    p = strchr(p, '\n');
    if (p != NULL) ++p;
  }
  return -1;
}

static kvrdma_client *connect_to(const char *addr) {
  char err[256];
  kvrdma_config *cfg = kvrdma_config_new();
  kvrdma_client *c = NULL;
  CHECK(kvrdma_config_set(cfg, "server-addr", addr, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_config_set(cfg, "buffer-mb", "8", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_client_connect(cfg, &c, err, sizeof err) == KVRDMA_OK);
  kvrdma_config_free(cfg); /* the client copied it */
  return c;
}

struct worker {
  kvrdma_client *client;
  int id;
  int bad;
};

static void *work(void *arg) {
  struct worker *w = (struct worker *)arg;
  char key[32], val[300000];
  int i;
  for (i = 0; i < 20; ++i) {
    size_t n = (i % 2) ? sizeof val : 100, got = 0;
    memset(val, 'a' + (w->id + i) % 26, n);
    sprintf(key, "w%d-%d", w->id, i);
    if (kvrdma_put(w->client, key, strlen(key), val, n, 0, NULL, 0) != KVRDMA_OK) ++w->bad;
    {
      char *out = malloc(sizeof val);
      if (out == NULL ||
          kvrdma_get_into(w->client, key, strlen(key), out, sizeof val, &got, NULL, 0) !=
              KVRDMA_OK ||
          got != n || memcmp(out, val, n) != 0)
        ++w->bad;
      free(out);
    }
  }
  return NULL;
}

int main(void) {
  char err[256];
  char tiny[8];
  kvrdma_config *cfg;
  kvrdma_server *server = NULL;
  kvrdma_client *client;
  void *val = NULL;
  size_t len = 0;
  kvrdma_view *view = NULL;
  const char key[] = {'k', '\0', 'y'}; /* binary key */
  char big[100000];
  int i;

  CHECK(strlen(kvrdma_version()) > 0);
  CHECK(strcmp(kvrdma_code_name(KVRDMA_OK), "OK") == 0);
  CHECK(strcmp(kvrdma_code_name(KVRDMA_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(strcmp(kvrdma_code_name(KVRDMA_INTERNAL), "INTERNAL") == 0);
  CHECK(strcmp(kvrdma_code_name(99), "UNKNOWN") == 0);
  CHECK(strcmp(kvrdma_code_name(-1), "UNKNOWN") == 0);

  /* NULL-accepting destroys. */
  kvrdma_config_free(NULL);
  kvrdma_server_stop(NULL);
  kvrdma_client_close(NULL);
  kvrdma_view_release(NULL);
  kvrdma_free(NULL);

  cfg = kvrdma_config_new();
  CHECK(cfg != NULL);
  CHECK(kvrdma_config_set(cfg, "no-such-setting", "1", err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(strstr(err, "no-such-setting") != NULL);
  CHECK(kvrdma_config_set(cfg, "memory-mb", "lots", err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(strstr(err, "memory-mb") != NULL);
  CHECK(kvrdma_config_set(cfg, "memory-mb", "lots", NULL, 0) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_config_set(cfg, "eviction", "fifo", tiny, sizeof tiny) == KVRDMA_INVALID_ARGUMENT);
  CHECK(strlen(tiny) == sizeof tiny - 1); /* truncated, NUL-terminated */
  CHECK(kvrdma_config_set(NULL, "memory-mb", "1", err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_config_set(cfg, NULL, "1", err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_config_set(cfg, "memory-mb", NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_config_set(cfg, "timeout-ms", "soon", err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_config_set(cfg, "no-such-setting", "1", tiny, 1) == KVRDMA_INVALID_ARGUMENT);
  CHECK(tiny[0] == '\0'); /* errlen 1: only the terminator fits */
  CHECK(kvrdma_config_set(cfg, "memory-mb", "1", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_config_set(cfg, "listen-addr", "127.0.0.1:0", err, sizeof err) == KVRDMA_OK);
  CHECK(err[0] == '\0');
  CHECK(kvrdma_config_set(cfg, "memory-mb", "64", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_config_set(cfg, "mock", "true", err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_server_start(cfg, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_server_start(cfg, &server, err, sizeof err) == KVRDMA_OK);
  kvrdma_config_free(cfg);
  if (server == NULL) {
    fprintf(stderr, "server did not start: %s\n", err);
    return 1;
  }
  CHECK(strncmp(kvrdma_server_address(server), "127.0.0.1:", 10) == 0);
  CHECK(strcmp(kvrdma_server_address(server), "127.0.0.1:0") != 0);

  client = connect_to(kvrdma_server_address(server));
  CHECK(client != NULL);

  CHECK(kvrdma_put(client, key, sizeof key, "v\0w", 3, 0, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_get(client, key, sizeof key, &val, &len, err, sizeof err) == KVRDMA_OK);
  CHECK(len == 3 && memcmp(val, "v\0w", 3) == 0);
  kvrdma_free(val);
  CHECK(kvrdma_get(client, "absent", 6, &val, &len, err, sizeof err) == KVRDMA_NOT_FOUND);
  CHECK(strlen(err) > 0);
  {
    /* Pipelined: submit several, drive them with poll, collect with wait. */
    kvrdma_pending *p[4] = {NULL, NULL, NULL, NULL};
    int done = 0, rounds = 0;
    CHECK(kvrdma_put_submit(client, "pk", 2, "pv", 2, 0, &p[0], err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_pending_wait(p[0], NULL, NULL, err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_get_submit(client, "pk", 2, &p[1], err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_get_submit(client, "absent", 6, &p[2], err, sizeof err) == KVRDMA_OK);
    while (!done && rounds++ < 1000000) {
      CHECK(kvrdma_pending_poll(p[1], &done, err, sizeof err) == KVRDMA_OK);
    }
    CHECK(done == 1);
    CHECK(kvrdma_pending_wait(p[1], &val, &len, err, sizeof err) == KVRDMA_OK);
    CHECK(len == 2 && memcmp(val, "pv", 2) == 0);
    kvrdma_free(val);
    CHECK(kvrdma_pending_wait(p[2], &val, &len, err, sizeof err) == KVRDMA_NOT_FOUND);
    CHECK(kvrdma_get_submit(client, "pk", 2, &p[3], err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_get_submit(NULL, "pk", 2, &p[3], err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
    for (int i = 0; i < 4; ++i) kvrdma_pending_free(p[i]); /* p[3] unfinished: abandoned */
    kvrdma_pending_free(NULL);
  }
  CHECK(kvrdma_get(client, "absent", 6, &val, &len, NULL, 0) == KVRDMA_NOT_FOUND);
  CHECK(kvrdma_put(client, "", 0, "v", 1, 0, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_put(NULL, "k", 1, "v", 1, 0, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_put(client, NULL, 1, "v", 1, 0, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_get(client, key, sizeof key, NULL, &len, err, sizeof err) ==
        KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_get_into(client, key, sizeof key, tiny, sizeof tiny, NULL, err, sizeof err) ==
        KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_get_view(client, key, sizeof key, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_delete(NULL, key, sizeof key, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(kvrdma_client_connect(NULL, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
  CHECK(strcmp(kvrdma_server_address(NULL), "") == 0);
  /* An empty value is a value. */
  CHECK(kvrdma_put(client, "empty", 5, NULL, 0, 0, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_get_into(client, "empty", 5, NULL, 0, &len, err, sizeof err) == KVRDMA_OK);
  CHECK(len == 0);

  /* A value above the inline threshold: pushed into the receive buffer. */
  for (i = 0; i < (int)sizeof big; ++i) big[i] = (char)(i * 7);
  CHECK(kvrdma_put(client, "big", 3, big, sizeof big, 60000, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_get_into(client, "big", 3, tiny, sizeof tiny, &len, err, sizeof err) ==
        KVRDMA_FAILED_PRECONDITION);
  CHECK(len == sizeof big);
  CHECK(strstr(err, "100000") != NULL);
  {
    char *copy = malloc(sizeof big);
    CHECK(copy != NULL);
    if (copy != NULL) {
      len = 0;
      CHECK(kvrdma_get_into(client, "big", 3, copy, sizeof big, &len, err, sizeof err) ==
            KVRDMA_OK);
      CHECK(len == sizeof big && memcmp(copy, big, sizeof big) == 0);
      free(copy);
    }
  }
  CHECK(kvrdma_get_view(client, "big", 3, &view, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_view_size(view) == sizeof big);
  CHECK(memcmp(kvrdma_view_data(view), big, sizeof big) == 0);
  kvrdma_view_release(view);
  CHECK(kvrdma_view_data(NULL) == NULL && kvrdma_view_size(NULL) == 0);
  CHECK(kvrdma_get_view(client, "absent", 6, &view, err, sizeof err) == KVRDMA_NOT_FOUND);
  CHECK(view == NULL);

  { /* batches: per-item codes, views released one by one, argument errors */
    const void *pkeys[4] = {"m1", "m2", "big", "absent"};
    const size_t pklens[4] = {2, 2, 3, 6};
    const void *pvals[2] = {"one", "two"};
    const size_t pvlens[2] = {3, 3};
    kvrdma_view *views[4];
    int codes[4];
    CHECK(kvrdma_put_many(client, 2, pkeys, pklens, pvals, pvlens, 0, codes, err, sizeof err) ==
          KVRDMA_OK);
    CHECK(codes[0] == KVRDMA_OK && codes[1] == KVRDMA_OK && err[0] == '\0');
    CHECK(kvrdma_get_many(client, 4, pkeys, pklens, views, codes, err, sizeof err) ==
          KVRDMA_NOT_FOUND);
    CHECK(strstr(err, "item 3") != NULL);
    CHECK(codes[0] == KVRDMA_OK && codes[1] == KVRDMA_OK && codes[2] == KVRDMA_OK);
    CHECK(codes[3] == KVRDMA_NOT_FOUND && views[3] == NULL);
    CHECK(kvrdma_view_size(views[0]) == 3 && memcmp(kvrdma_view_data(views[0]), "one", 3) == 0);
    CHECK(kvrdma_view_size(views[1]) == 3 && memcmp(kvrdma_view_data(views[1]), "two", 3) == 0);
    CHECK(kvrdma_view_size(views[2]) == sizeof big &&
          memcmp(kvrdma_view_data(views[2]), big, sizeof big) == 0);
    for (i = 0; i < 4; ++i) kvrdma_view_release(views[i]);
    CHECK(kvrdma_get_many(client, 0, NULL, NULL, NULL, NULL, err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_get_many(client, 2, NULL, pklens, views, codes, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    CHECK(codes[0] == KVRDMA_INVALID_ARGUMENT && codes[1] == KVRDMA_INVALID_ARGUMENT);
    CHECK(views[0] == NULL && views[1] == NULL);
    CHECK(kvrdma_put_many(client, 2, pkeys, pklens, NULL, pvlens, 0, codes, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_put_many(NULL, 2, pkeys, pklens, pvals, pvlens, 0, codes, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
  }

  CHECK(kvrdma_delete(client, "big", 3, err, sizeof err) == KVRDMA_OK);
  CHECK(kvrdma_delete(client, "big", 3, err, sizeof err) == KVRDMA_NOT_FOUND);
  CHECK(kvrdma_get(client, "big", 3, &val, &len, err, sizeof err) == KVRDMA_NOT_FOUND);

  { /* one client, several threads */
    pthread_t threads[4];
    struct worker w[4];
    for (i = 0; i < 4; ++i) {
      w[i].client = client;
      w[i].id = i;
      w[i].bad = 0;
      pthread_create(&threads[i], NULL, work, &w[i]);
    }
    for (i = 0; i < 4; ++i) {
      pthread_join(threads[i], NULL);
      CHECK(w[i].bad == 0);
    }
  }

  { /* counters, from the client (over the wire) and the embedded server */
    char *text = NULL;
    size_t tlen = 0;
    CHECK(kvrdma_client_stats(client, &text, &tlen, err, sizeof err) == KVRDMA_OK);
    CHECK(text != NULL && tlen == strlen(text));
    if (text != NULL) {
      CHECK(stat_value(text, "puts") >= 83); /* 3 here + 80 from the workers */
      CHECK(stat_value(text, "get_misses") >= 4);
      CHECK(stat_value(text, "deletes") >= 1);
      CHECK(strstr(text, "transport=") != NULL);
    }
    kvrdma_free(text);
    text = NULL;
    CHECK(kvrdma_server_stats(server, &text, NULL, err, sizeof err) == KVRDMA_OK);
    CHECK(text != NULL && stat_value(text, "keys") >= 80);
    kvrdma_free(text);
    CHECK(kvrdma_client_stats(NULL, &text, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_server_stats(server, NULL, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
    { /* metrics: Prometheus text of the same server (tests/metrics.cmake checks the content) */
      size_t mlen = 0;
      CHECK(kvrdma_server_metrics(server, &text, &mlen, err, sizeof err) == KVRDMA_OK);
      CHECK(text != NULL && mlen == strlen(text));
      CHECK(text != NULL && strstr(text, "# TYPE kvrdma_keys gauge\n") != NULL);
      kvrdma_free(text);
      text = NULL;
      CHECK(kvrdma_server_metrics(NULL, &text, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
      CHECK(kvrdma_server_metrics(server, NULL, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
    }
  }

  { /* waiting for a change: the version line moves with a PUT, not with reads */
    char *text = NULL;
    long long before, after;
    double started;
    CHECK(kvrdma_client_stats(client, &text, NULL, err, sizeof err) == KVRDMA_OK);
    before = text != NULL ? stat_value(text, "version") : -1;
    CHECK(before > 0);
    kvrdma_free(text);
    text = NULL;
    /* a short wait answers with the version then current (a pin released by an earlier GET's
     * write completion may still move it, so not necessarily `before`) */
    CHECK(kvrdma_client_stats_after(client, (uint64_t)before, 50, &text, NULL, err, sizeof err) ==
          KVRDMA_OK);
    CHECK(text != NULL && stat_value(text, "version") >= before);
    if (text != NULL) before = stat_value(text, "version");
    kvrdma_free(text);
    text = NULL;
    CHECK(kvrdma_put(client, "moved", 5, "v", 1, 0, err, sizeof err) == KVRDMA_OK);
    started = now_seconds();
    CHECK(kvrdma_client_stats_after(client, (uint64_t)before, 10000, &text, NULL, err,
                                    sizeof err) == KVRDMA_OK);
    after = text != NULL ? stat_value(text, "version") : -1;
    CHECK(after > before);
    CHECK(now_seconds() - started < 5.0); /* answered on the change, not at the end of the wait */
    kvrdma_free(text);
    CHECK(kvrdma_client_stats_after(NULL, 0, 0, &text, NULL, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_client_stats_after(client, 0, 0, NULL, NULL, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
  }

  { /* an unreachable server fails quickly with UNAVAILABLE */
    kvrdma_client *none = NULL;
    double started;
    cfg = kvrdma_config_new();
    CHECK(kvrdma_config_set(cfg, "server-addr", "127.0.0.1:1", err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_config_set(cfg, "timeout-ms", "500", err, sizeof err) == KVRDMA_OK);
    started = now_seconds();
    CHECK(kvrdma_client_connect(cfg, &none, err, sizeof err) == KVRDMA_UNAVAILABLE);
    CHECK(now_seconds() - started < 5.0);
    CHECK(strstr(err, "127.0.0.1:1") != NULL);
    CHECK(none == NULL);
    kvrdma_config_free(cfg);
  }

  { /* caller memory: register (refused by the mock), allocate, get_into_mem, put_from, batches */
    kvrdma_mem *mem = NULL, *released = NULL;
    kvrdma_mem *mems[3];
    const void *keys[3];
    size_t keylens[3], offsets[3], sizes[3], lens[3];
    int codes[3];
    char *data;
    static char heap[4096];
    size_t j;
    kvrdma_mem_release(NULL);
    CHECK(kvrdma_mem_data(NULL) == NULL);
    CHECK(kvrdma_mem_size(NULL) == 0);
    CHECK(kvrdma_client_register(client, heap, sizeof heap, KVRDMA_MEM_HOST, &mem, err,
                                 sizeof err) == KVRDMA_FAILED_PRECONDITION);
    CHECK(strstr(err, "allocate") != NULL);
    CHECK(mem == NULL);
    CHECK(kvrdma_client_register(client, heap, sizeof heap, 7, &mem, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_client_allocate(NULL, 10, &mem, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_client_allocate(client, 10, NULL, err, sizeof err) == KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_client_allocate(client, 1 << 20, &mem, err, sizeof err) == KVRDMA_OK);
    CHECK(mem != NULL && kvrdma_mem_size(mem) == (size_t)1 << 20);
    data = (char *)kvrdma_mem_data(mem);
    for (j = 0; j < sizeof big; ++j) big[j] = (char)(j * 13 + 5);
    memcpy(data + 3, big, sizeof big);
    CHECK(kvrdma_put_from(client, "from", 4, mem, 3, sizeof big, 0, err, sizeof err) == KVRDMA_OK);
    CHECK(kvrdma_put_from(client, "from", 4, mem, (1 << 20) - 10, 11, 0, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    CHECK(kvrdma_put_from(client, "from", 4, NULL, 0, 1, 0, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    memset(data + 200000, 0, sizeof big);
    CHECK(kvrdma_get_into_mem(client, "from", 4, mem, 200000, sizeof big, &len, err, sizeof err) ==
          KVRDMA_OK);
    CHECK(len == sizeof big && memcmp(data + 200000, big, sizeof big) == 0);
    CHECK(kvrdma_get_into_mem(client, "from", 4, mem, 0, 100, &len, err, sizeof err) ==
          KVRDMA_FAILED_PRECONDITION);
    CHECK(len == sizeof big);
    CHECK(kvrdma_get_into_mem(client, "from", 4, mem, 0, 100, NULL, err, sizeof err) ==
          KVRDMA_INVALID_ARGUMENT);
    /* kvrdma_get_into into allocated memory: zero copy, same bytes */
    memset(data + 400000, 0, sizeof big);
    CHECK(kvrdma_get_into(client, "from", 4, data + 400000, sizeof big, &len, err, sizeof err) ==
          KVRDMA_OK);
    CHECK(len == sizeof big && memcmp(data + 400000, big, sizeof big) == 0);
    /* batches: a small and a large value, one missing key */
    CHECK(kvrdma_client_allocate(client, 4096, &released, err, sizeof err) == KVRDMA_OK);
    keys[0] = "s";
    keys[1] = "l";
    keys[2] = "absent";
    keylens[0] = 1;
    keylens[1] = 1;
    keylens[2] = 6;
    mems[0] = mem;
    mems[1] = mem;
    mems[2] = released;
    offsets[0] = 600000;
    offsets[1] = 600100;
    offsets[2] = 0;
    sizes[0] = 50;
    sizes[1] = sizeof big;
    sizes[2] = 10;
    memcpy(data + 600000, big + 7, 50);
    memcpy(data + 600100, big, sizeof big);
    CHECK(kvrdma_put_many_from(client, 2, keys, keylens, mems, offsets, sizes, 0, codes, err,
                               sizeof err) == KVRDMA_OK);
    CHECK(codes[0] == KVRDMA_OK && codes[1] == KVRDMA_OK);
    offsets[0] = 800000;
    offsets[1] = 800100;
    sizes[0] = 64;
    sizes[2] = 4096;
    CHECK(kvrdma_get_many_into(client, 3, keys, keylens, mems, offsets, sizes, lens, codes, err,
                               sizeof err) == KVRDMA_NOT_FOUND);
    CHECK(strstr(err, "item 2") != NULL);
    CHECK(codes[0] == KVRDMA_OK && codes[1] == KVRDMA_OK && codes[2] == KVRDMA_NOT_FOUND);
    CHECK(lens[0] == 50 && lens[1] == sizeof big);
    CHECK(memcmp(data + 800000, big + 7, 50) == 0 && memcmp(data + 800100, big, sizeof big) == 0);
    mems[2] = NULL;
    CHECK(kvrdma_get_many_into(client, 3, keys, keylens, mems, offsets, sizes, lens, codes, err,
                               sizeof err) == KVRDMA_INVALID_ARGUMENT);
    CHECK(codes[2] == KVRDMA_INVALID_ARGUMENT);
    kvrdma_mem_release(released);
    kvrdma_mem_release(mem);
  }

  kvrdma_client_close(client);
  kvrdma_server_stop(server);
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
