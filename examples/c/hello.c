/* kvrdma from C: start a server, connect a client, put, get, view, delete. */
#include <stdio.h>
#include <string.h>

#include <kvrdma/kvrdma.h>

static int fail(const char *what, int code, const char *err) {
  fprintf(stderr, "%s failed: %s (%s)\n", what, kvrdma_code_name(code), err);
  return 1;
}

int main(void) {
  char err[256];
  int rc;
  kvrdma_config *cfg = kvrdma_config_new();
  kvrdma_server *server = NULL;
  kvrdma_client *client = NULL;
  kvrdma_view *view = NULL;
  void *val = NULL;
  size_t len = 0;
  int same;
  static char block[256 * 1024]; /* above the inline threshold: pushed into the receive buffer */

  kvrdma_config_set(cfg, "listen-addr", "127.0.0.1:0", NULL, 0);
  kvrdma_config_set(cfg, "memory-mb", "64", NULL, 0);
  if ((rc = kvrdma_server_start(cfg, &server, err, sizeof err)) != KVRDMA_OK)
    return fail("server_start", rc, err);
  kvrdma_config_set(cfg, "server-addr", kvrdma_server_address(server), NULL, 0);
  kvrdma_config_set(cfg, "buffer-mb", "8", NULL, 0);
  if ((rc = kvrdma_client_connect(cfg, &client, err, sizeof err)) != KVRDMA_OK)
    return fail("client_connect", rc, err);
  kvrdma_config_free(cfg);
  printf("server on %s, kvrdma %s\n", kvrdma_server_address(server), kvrdma_version());

  if ((rc = kvrdma_put(client, "greeting", 8, "hello", 5, 0, err, sizeof err)) != KVRDMA_OK)
    return fail("put", rc, err);
  if ((rc = kvrdma_get(client, "greeting", 8, &val, &len, err, sizeof err)) != KVRDMA_OK)
    return fail("get", rc, err);
  printf("greeting = %.*s\n", (int)len, (const char *)val);
  kvrdma_free(val);

  memset(block, 'x', sizeof block);
  if ((rc = kvrdma_put(client, "block", 5, block, sizeof block, 0, err, sizeof err)) != KVRDMA_OK)
    return fail("put block", rc, err);
  if ((rc = kvrdma_get_view(client, "block", 5, &view, err, sizeof err)) != KVRDMA_OK)
    return fail("get_view", rc, err);
  same = kvrdma_view_size(view) == sizeof block &&
         memcmp(kvrdma_view_data(view), block, sizeof block) == 0;
  printf("block: %zu bytes, zero copy, same as sent: %s\n", kvrdma_view_size(view),
         same ? "yes" : "NO");
  kvrdma_view_release(view);

  if ((rc = kvrdma_delete(client, "greeting", 8, err, sizeof err)) != KVRDMA_OK)
    return fail("delete", rc, err);
  rc = kvrdma_get(client, "greeting", 8, &val, &len, err, sizeof err);
  printf("after delete: %s\n", kvrdma_code_name(rc));
  kvrdma_client_close(client);
  kvrdma_server_stop(server);
  return rc == KVRDMA_NOT_FOUND && same ? 0 : 1;
}
